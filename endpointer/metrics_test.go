package endpointer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/metrics"
	"github.com/go-kit/kit/metrics/generic"

	"github.com/etcdsd/etcdsd/internal/itest"
)

// observations is a go-kit Histogram that counts its observations.
type observations struct {
	mu sync.Mutex
	n  int
}

func (o *observations) With(...string) metrics.Histogram { return o }
func (o *observations) Observe(float64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n++
}

func (o *observations) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n
}

func TestMetricsCountPicksFailuresRetriesNoMatchAndEjections(t *testing.T) {
	f := newFleet()
	f.get("a").fail.Store(true)
	m := Metrics{
		Picks:     generic.NewCounter("picks"),
		Failures:  generic.NewCounter("failures"),
		Retries:   generic.NewCounter("retries"),
		NoMatch:   generic.NewCounter("nomatch"),
		Ejections: generic.NewCounter("ejections"),
	}
	e := newEndpointer(t, source(t, "a", "b"), f, WithMetrics(m), WithRetry(2, 0))
	fakeClock(e)
	// Round robin from a: each call fails on a and succeeds on b, until a
	// is ejected after its 5th failure; then every call goes to b.
	for i := range 10 {
		if _, err := e.Endpoint()(context.Background(), nil); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	value := func(c metrics.Counter) float64 { return c.(*generic.Counter).Value() }
	if got := value(m.Failures); got != 5 {
		t.Errorf("failures = %v, want 5", got)
	}
	if got := value(m.Retries); got != 5 {
		t.Errorf("retries = %v, want 5", got)
	}
	if got := value(m.Picks); got != 15 {
		t.Errorf("picks = %v, want 15 (10 calls, 5 retried)", got)
	}
	if got := value(m.Ejections); got != 1 {
		t.Errorf("ejections = %v, want 1", got)
	}
	if _, err := e.Endpoint()(WithVersion(context.Background(), "v9"), nil); !errors.Is(err, ErrNoMatch) {
		t.Fatalf("call for a missing version: %v, want ErrNoMatch", err)
	}
	if _, err := e.Pick(WithVersion(context.Background(), "v9")); !errors.Is(err, ErrNoMatch) {
		t.Fatalf("Pick for a missing version: %v, want ErrNoMatch", err)
	}
	if got := value(m.NoMatch); got != 2 {
		t.Errorf("no-match = %v, want 2", got)
	}
}

func TestMetricsObserveTheUpdateTimeOfEveryBatchFromAFeed(t *testing.T) {
	var h observations
	src := source(t, "a").(*feedSource)
	e := newEndpointer(t, src, newFleet(), WithMetrics(Metrics{UpdateSeconds: &h}))
	src.put("/b", "b")
	itest.Eventually(t, 5*time.Second, "the change applied", func() bool { return len(e.Instances()) == 2 })
	itest.Eventually(t, 5*time.Second, "the change observed", func() bool { return h.count() == 1 })
	src.Replace(map[string]string{"/a": "a"})
	itest.Eventually(t, 5*time.Second, "the resync observed", func() bool { return h.count() == 2 })
}

func TestMetricsWithLabelsEveryMetric(t *testing.T) {
	m := Metrics{Picks: generic.NewCounter("picks"), UpdateSeconds: &observations{}}.With("service", "users")
	if m.Picks == nil || m.UpdateSeconds == nil || m.Failures != nil {
		t.Fatalf("With = %+v: want the set metrics labelled, the others nil", m)
	}
}
