package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/metrics"

	"github.com/etcdsd/etcdsd/instance"
)

// recorder is a go-kit Counter, Gauge and Histogram that keeps, per label
// set, the sum of what was added, the last value set, and the count of
// observations.
type recorder struct {
	mu     *sync.Mutex
	labels string
	sums   map[string]float64
	counts map[string]int
}

func newRecorder() *recorder {
	return &recorder{mu: new(sync.Mutex), sums: map[string]float64{}, counts: map[string]int{}}
}

func (r *recorder) With(lvs ...string) *recorder {
	c := *r
	c.labels = strings.TrimPrefix(r.labels+","+strings.Join(lvs, "="), ",")
	return &c
}

func (r *recorder) add(v float64, set bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if set {
		r.sums[r.labels] = v
	} else {
		r.sums[r.labels] += v
	}
	r.counts[r.labels]++
}

func (r *recorder) value(labels string) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sums[labels]
}

func (r *recorder) count(labels string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[labels]
}

type counter struct{ *recorder }

func (c counter) With(lvs ...string) metrics.Counter { return counter{c.recorder.With(lvs...)} }
func (c counter) Add(d float64)                      { c.add(d, false) }

type gauge struct{ *recorder }

func (g gauge) With(lvs ...string) metrics.Gauge { return gauge{g.recorder.With(lvs...)} }
func (g gauge) Set(v float64)                    { g.add(v, true) }
func (g gauge) Add(d float64)                    { g.add(d, false) }

type histogram struct{ *recorder }

func (h histogram) With(lvs ...string) metrics.Histogram { return histogram{h.recorder.With(lvs...)} }
func (h histogram) Observe(v float64)                    { h.add(v, false) }

type testMetrics struct {
	instances, resyncs, watchErrors, resumes, update *recorder
}

func newTestMetrics() (*Metrics, testMetrics) {
	r := testMetrics{newRecorder(), newRecorder(), newRecorder(), newRecorder(), newRecorder()}
	return &Metrics{Instances: gauge{r.instances}, Resyncs: counter{r.resyncs}, WatchErrors: counter{r.watchErrors}, Resumes: counter{r.resumes}, Update: histogram{r.update}}, r
}

func startMirrorWithMetrics(t *testing.T, src Source) (batches, testMetrics) {
	t.Helper()
	m, rec := newTestMetrics()
	out := make(batches, 64)
	feed := NewFeed(WithObserver(func(b Batch) { out <- b }), WithMetrics(m))
	mirror, err := Start(context.Background(), src, feed, nil, time.Millisecond, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mirror.Stop(); feed.Stop() })
	return out, rec
}

func TestMetricsCountInstancesResyncsByCauseWatchErrorsResumesAndUpdates(t *testing.T) {
	src := newScriptedSource(10, KV{Key: "/p/a", Value: "1:1", ModRev: 3}, KV{Key: "/p/b", Value: "2:2", ModRev: 4})
	out, rec := startMirrorWithMetrics(t, src)
	out.next(t)
	if got := rec.instances.value(""); got != 2 {
		t.Fatalf("instances = %v after the first read, want 2", got)
	}

	w := <-src.watches
	<-src.fromRevs
	w <- response{rev: 11, changes: []Change{{Op: Delete, Key: "/p/a", Rev: 11}}}
	out.next(t)
	if got := rec.instances.value(""); got != 1 {
		t.Fatalf("instances = %v after a delete, want 1", got)
	}

	src.set(20, nil, KV{Key: "/p/b", Value: "2:2", ModRev: 4}, KV{Key: "/p/c", Value: "3:3", ModRev: 19})
	w <- response{err: fmt.Errorf("watch: %w", ErrCompacted)}
	out.next(t)
	w = <-src.watches
	<-src.fromRevs
	w <- response{err: errors.New("no leader")}
	out.next(t) // the broken watch
	w = <-src.watches
	<-src.fromRevs
	w <- response{down: errors.New("etcd unreachable")} // an outage the resumed watch stays open through
	w <- response{rev: 21, current: true}
	out.next(t) // caught up

	if got := rec.resyncs.value("cause=compacted"); got != 1 {
		t.Errorf("resyncs{cause=compacted} = %v, want 1", got)
	}
	if got := rec.resyncs.value("cause=outage"); got != 0 {
		t.Errorf("resyncs{cause=outage} = %v, want 0: a broken watch is resumed, not read again", got)
	}
	if got := rec.watchErrors.value(""); got != 2 {
		t.Errorf("watch errors = %v, want 2 (the broken watch and the outage; compaction is none)", got)
	}
	if got := rec.resumes.value(""); got != 1 {
		t.Errorf("resumes = %v, want 1", got)
	}
	// The first read, the delete, the resync, the caught-up batch; the
	// error batch is not an update.
	if got := rec.update.count(""); got != 4 {
		t.Errorf("updates observed = %d, want 4", got)
	}
}

func TestStartRetryingReportsTheFailedFirstReadAndFillsInLater(t *testing.T) {
	src := newScriptedSource(0)
	refused := errors.New("connection refused")
	src.set(0, refused)
	m, rec := newTestMetrics()
	out := make(batches, 64)
	feed := NewFeed(WithObserver(func(b Batch) { out <- b }), WithMetrics(m))
	mirror, err := StartRetrying(context.Background(), src, feed, nil, time.Millisecond, 5*time.Millisecond)
	if !errors.Is(err, refused) {
		t.Fatalf("StartRetrying error = %v, want the first read's", err)
	}
	defer feed.Stop()
	defer mirror.Stop()
	if b := out.next(t); !errors.Is(b.Err, refused) {
		t.Fatalf("first batch = %+v, want the error", b)
	}
	if st := feed.State(); !errors.Is(st.Err, refused) || len(st.Instances) != 0 {
		t.Fatalf("state = %+v, want the error and no instances", st)
	}
	src.set(7, nil, KV{Key: "/p/a", Value: "1:1", ModRev: 7})
	b := out.next(t)
	if b.Err != nil || !b.Reset || describe(b.Changes) != "put /p/a=1:1@7; " {
		t.Fatalf("batch once etcd answers = %+v (%s), want the first content as a reset", b, describe(b.Changes))
	}
	if got := rec.resyncs.value("cause=outage"); got != 1 {
		t.Errorf("resyncs{cause=outage} = %v, want 1", got)
	}
	<-src.watches
	if rev := <-src.fromRevs; rev != 8 {
		t.Fatalf("watch starts at %d, want 8", rev)
	}
}

func TestCoalescedBatchKeepsTheEarliestTime(t *testing.T) {
	feed := NewFeed()
	defer feed.Stop()
	sub := feed.Subscribe()
	defer sub.Close()
	feed.Reset(1, nil, true)
	first := sub.Take().At
	feed.Apply(2, []Change{{Op: Put, Key: "/p/a", Value: "1:1", Rev: 2}})
	time.Sleep(time.Millisecond) // the two batches must differ in time
	feed.Apply(3, []Change{{Op: Put, Key: "/p/b", Value: "2:2", Rev: 3}})
	b := sub.Take()
	if len(b.Changes) != 2 {
		t.Fatalf("coalesced batch = %+v, want both changes", b)
	}
	if b.At.IsZero() || !b.At.After(first) {
		t.Fatalf("coalesced batch At = %v, want the first pending batch's time, after %v", b.At, first)
	}
	if d := time.Since(b.At); d < time.Millisecond {
		t.Fatalf("coalesced batch At is %v old, want the earlier batch's time", d)
	}
}

// stallingGauge holds its first Set until a second one has been made, or
// until patience runs out, and keeps the value of the Set that returns
// last, as a gauge does.
type stallingGauge struct {
	metrics.Gauge
	mu       sync.Mutex
	calls    int
	last     float64
	first    chan struct{} // closed when the first Set has begun
	second   chan struct{} // closed when a second Set has been made
	patience time.Duration
}

func (g *stallingGauge) Set(v float64) {
	g.mu.Lock()
	g.calls++
	n := g.calls
	g.mu.Unlock()
	switch n {
	case 1:
		close(g.first)
		select {
		case <-g.second:
		case <-time.After(g.patience):
		}
	case 2:
		close(g.second)
	}
	g.mu.Lock()
	g.last = v
	g.mu.Unlock()
}

// TestInstancesGaugeEndsAtTheFeedsCount races a Refilter, whose Set of the
// instances gauge is held up, against an Apply that adds an instance: the
// gauge must end at the Feed's count, not at the older count the held-up
// Set carries.
func TestInstancesGaugeEndsAtTheFeedsCount(t *testing.T) {
	g := &stallingGauge{first: make(chan struct{}), second: make(chan struct{}), patience: time.Second}
	var drain sync.Mutex
	drained := map[string]bool{}
	filter := func(key string, inst instance.Instance) (instance.Instance, bool) {
		drain.Lock()
		defer drain.Unlock()
		return inst, !drained[key]
	}
	f := NewFeed(WithFilter(filter), WithMetrics(&Metrics{}))
	f.Reset(1, []KV{{Key: "/a", Value: "10.0.0.1:80", ModRev: 1}, {Key: "/b", Value: "10.0.0.2:80", ModRev: 1}}, true)
	f.metrics.Instances = g

	drain.Lock()
	drained["/a"] = true
	drain.Unlock()
	refiltered := make(chan struct{})
	go func() { defer close(refiltered); f.Refilter() }() // 1 instance seen
	<-g.first
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		f.Apply(2, []Change{{Op: Put, Key: "/c", Value: "10.0.0.3:80", Rev: 2}}) // 2 seen
	}()
	<-refiltered
	<-applied
	g.mu.Lock()
	defer g.mu.Unlock()
	if want := float64(f.Len()); g.last != want {
		t.Fatalf("instances gauge ends at %v; the Feed holds %v", g.last, want)
	}
}
