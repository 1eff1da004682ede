package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	kitsd "github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"github.com/zeromicro/go-zero/core/discov"
	"github.com/zeromicro/go-zero/core/logx"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/endpointer"
	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
)

// Environment variables that shorten or change BenchmarkChurn, for a smoke
// test such as ETCDSD_CHURN_SECONDS=2 ETCDSD_CHURN_N=10000.
const (
	envChurnSeconds = "ETCDSD_CHURN_SECONDS" // churn phase length, default 10
	envChurnRate    = "ETCDSD_CHURN_RATE"    // value changes per second, default 1000
	envChurnN       = "ETCDSD_CHURN_N"       // instance counts, default "10000,100000"
	envChurnDrain   = "ETCDSD_CHURN_DRAIN"   // seconds to wait for late markers, default 10
)

const (
	churnWriters   = 8                     // goroutines putting churn values
	churnTick      = 10 * time.Millisecond // the churn is paced in steps of this
	markerInterval = 50 * time.Millisecond
	markerPrefix   = prefix + "marker-" // no preloaded key starts so
	markerNet      = "10.255."          // no preloaded or churned address starts so
	settleTime     = time.Second        // before heap readings and between phases
)

type churnConfig struct {
	duration time.Duration
	rate     int
	ns       []int
	drain    time.Duration
}

func churnConfigFromEnv(b *testing.B) churnConfig {
	cfg := churnConfig{duration: 10 * time.Second, rate: 1000, ns: []int{10000, 100000}, drain: 10 * time.Second}
	seconds := func(name string, d *time.Duration) {
		if s := os.Getenv(name); s != "" {
			f, err := strconv.ParseFloat(s, 64)
			if err != nil || f <= 0 {
				b.Fatalf("%s=%q: want a positive number of seconds", name, s)
			}
			*d = time.Duration(f * float64(time.Second))
		}
	}
	seconds(envChurnSeconds, &cfg.duration)
	seconds(envChurnDrain, &cfg.drain)
	if s := os.Getenv(envChurnRate); s != "" {
		r, err := strconv.Atoi(s)
		if err != nil || r <= 0 {
			b.Fatalf("%s=%q: want a positive number of changes per second", envChurnRate, s)
		}
		cfg.rate = r
	}
	if s := os.Getenv(envChurnN); s != "" {
		cfg.ns = nil
		for f := range strings.SplitSeq(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("%s=%q: want a comma-separated list of positive counts", envChurnN, s)
			}
			cfg.ns = append(cfg.ns, n)
		}
	}
	return cfg
}

// markers records when each marker value was put and when a consumer first
// saw it.
type markers struct {
	seq  atomic.Int64
	mu   sync.Mutex
	sent map[string]time.Time
	lag  map[string]time.Duration
}

func newMarkers() *markers {
	return &markers{sent: make(map[string]time.Time), lag: make(map[string]time.Duration)}
}

// next returns the key and value of a new marker, an address no other
// instance has, and records now as its put time.
func (m *markers) next() (key, value string) {
	seq := m.seq.Add(1)
	key = fmt.Sprintf("%s%05d", markerPrefix, seq)
	value = fmt.Sprintf("%s%d.%d:9000", markerNet, seq/256%256, seq%256)
	m.mu.Lock()
	m.sent[value] = time.Now()
	m.mu.Unlock()
	return key, value
}

// saw records that a consumer holds value, if it is a marker not seen yet.
// It costs a prefix comparison for any other value, so consumers may call
// it for every value they hold.
func (m *markers) saw(value string) {
	if !strings.HasPrefix(value, markerNet) {
		return
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.sent[value]; ok {
		if _, seen := m.lag[value]; !seen {
			m.lag[value] = now.Sub(t)
		}
	}
}

// pending returns the markers put but not seen yet.
func (m *markers) pending() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var p []string
	for v := range m.sent {
		if _, seen := m.lag[v]; !seen {
			p = append(p, v)
		}
	}
	return p
}

// wait waits until every marker is seen or the deadline passes, and returns
// the sorted lags and how many markers were not seen. An unseen marker
// counts with its age at the deadline, a lower bound of its lag.
func (m *markers) wait(deadline time.Time) (lags []time.Duration, unseen int) {
	for len(m.pending()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for v, t := range m.sent {
		l, seen := m.lag[v]
		if !seen {
			unseen++
			l = deadline.Sub(t)
		}
		lags = append(lags, l)
	}
	slices.Sort(lags)
	return lags, unseen
}

// churnPhase is what one churn phase measured.
type churnPhase struct {
	cpu     time.Duration // process user+sys CPU time
	rate    float64       // value changes per second achieved
	dropped int           // changes not sent because the writers lagged
}

// churn puts cfg.rate new values per second to random keys among the n
// preloaded ones for cfg.duration, from churnWriters goroutines paced by a
// ticker, and a new marker key every markerInterval. It returns the CPU the
// process used and the rate reached. The markers stay: see clearMarkers.
func churn(b *testing.B, cli *clientv3.Client, n int, cfg churnConfig, m *markers) churnPhase {
	ctx := context.Background()
	type change struct{ i, seq int }
	jobs := make(chan change, cfg.rate)
	var wg sync.WaitGroup
	var puts atomic.Int64
	for range churnWriters {
		wg.Go(func() {
			for c := range jobs {
				// A new address for instance i, as a restarted pod gets.
				v := fmt.Sprintf("10.%d.%d.%d:%d", c.i/65536, c.i/256%256, c.i%256, 10000+c.seq%55000)
				if _, err := cli.Put(ctx, fmt.Sprintf("%s%05d", prefix, c.i), v); err != nil {
					b.Errorf("churn put: %v", err)
					return
				}
				puts.Add(1)
			}
		})
	}
	quit := make(chan struct{})
	var markerWG sync.WaitGroup
	markerWG.Go(func() {
		t := time.NewTicker(markerInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				k, v := m.next()
				if _, err := cli.Put(ctx, k, v); err != nil {
					b.Errorf("marker put %s: %v", k, err)
					return
				}
			case <-quit:
				return
			}
		}
	})

	cpu0 := processCPU(b)
	start := time.Now()
	t := time.NewTicker(churnTick)
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	sent, dropped := 0, 0
	for now := range t.C {
		elapsed := now.Sub(start)
		if elapsed > cfg.duration {
			elapsed = cfg.duration
		}
		for due := int(elapsed.Seconds() * float64(cfg.rate)); sent < due; sent++ {
			select {
			case jobs <- change{i: rng.IntN(n), seq: sent}:
			default:
				dropped++
			}
		}
		if elapsed == cfg.duration {
			break
		}
	}
	t.Stop()
	close(jobs)
	close(quit)
	wg.Wait()
	markerWG.Wait()
	wall := time.Since(start)
	return churnPhase{
		cpu:     processCPU(b) - cpu0,
		rate:    float64(puts.Load()) / wall.Seconds(),
		dropped: dropped,
	}
}

// clearMarkers deletes the markers of a phase, so that every phase starts
// with the same n instances.
func clearMarkers(b *testing.B, cli *clientv3.Client) {
	if _, err := cli.Delete(context.Background(), markerPrefix, clientv3.WithPrefix()); err != nil {
		b.Fatalf("delete markers: %v", err)
	}
}

// processCPU returns the user+sys CPU time of the whole process, embedded
// etcd included.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heapInUse returns the live heap after two collections.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// A churnConsumer follows the prefix holding n instances and tells m each
// marker it sees. It returns once it holds the n instances, and returns a
// function that stops everything it started.
type churnConsumer func(b *testing.B, srv *etcdtest.Server, n int, m *markers) (stop func())

// rawWatch is the floor: a raw clientv3 watch applied into a map.
func rawWatch(b *testing.B, srv *etcdtest.Server, n int, m *markers) func() {
	cli := srv.Client(b)
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		b.Fatal(err)
	}
	view := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		view[string(kv.Key)] = string(kv.Value)
	}
	wch := cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for wr := range wch {
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					delete(view, string(ev.Kv.Key))
					continue
				}
				v := string(ev.Kv.Value)
				view[string(ev.Kv.Key)] = v
				m.saw(v)
			}
		}
	}()
	return func() {
		cancel()
		<-done
		cli.Close()
	}
}

// newInstancer returns an etcdsd Instancer of the prefix on a client of its
// own, and a function that stops both.
func newInstancer(b *testing.B, srv *etcdtest.Server) (*etcdv3.Instancer, func()) {
	c, err := etcdv3.NewClient(context.Background(), srv.Endpoints(), etcdv3.ClientOptions{})
	if err != nil {
		b.Fatal(err)
	}
	in, err := etcdv3.NewInstancer(c, prefix, log.NewNopLogger())
	if err != nil {
		c.(io.Closer).Close()
		b.Fatal(err)
	}
	return in, func() {
		in.Stop()
		c.(io.Closer).Close()
	}
}

// instancerEvents subscribes one sd.Event channel to etcdsd's Instancer.
func instancerEvents(b *testing.B, srv *etcdtest.Server, n int, m *markers) func() {
	in, stopInstancer := newInstancer(b, srv)
	ch := make(chan kitsd.Event, 1)
	in.Register(ch)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case ev := <-ch:
				for _, v := range m.pending() {
					if _, found := slices.BinarySearch(ev.Instances, v); found {
						m.saw(v)
					}
				}
			case <-quit:
				return
			}
		}
	}()
	return func() {
		in.Deregister(ch)
		close(quit)
		<-done
		stopInstancer()
	}
}

// recordingFactory returns a factory that tells m each instance it is
// called with, and counts the calls.
func recordingFactory(m *markers, calls *atomic.Int64) kitsd.Factory {
	return func(inst string) (endpoint.Endpoint, io.Closer, error) {
		calls.Add(1)
		m.saw(inst)
		return endpoint.Nop, nil, nil
	}
}

// etcdsdEndpointer is etcdsd's endpointer on etcdsd's Instancer.
func etcdsdEndpointer(b *testing.B, srv *etcdtest.Server, n int, m *markers) func() {
	in, stopInstancer := newInstancer(b, srv)
	var calls atomic.Int64
	e, err := endpointer.New(in, recordingFactory(m, &calls), log.NewNopLogger())
	if err != nil {
		stopInstancer()
		b.Fatal(err)
	}
	return func() {
		e.Close()
		stopInstancer()
	}
}

// goKitEndpointer is go-kit's sd.Endpointer on etcdsd's Instancer.
func goKitEndpointer(b *testing.B, srv *etcdtest.Server, n int, m *markers) func() {
	in, stopInstancer := newInstancer(b, srv)
	var calls atomic.Int64
	e := kitsd.NewEndpointer(in, recordingFactory(m, &calls), log.NewNopLogger())
	stop := func() {
		e.Close()
		stopInstancer()
	}
	// go-kit builds the endpoints in its own goroutine.
	for deadline := time.Now().Add(time.Minute); calls.Load() < int64(n); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			stop()
			b.Fatalf("go-kit endpointer made %d of %d endpoints within a minute", calls.Load(), n)
		}
	}
	return stop
}

// goZeroSubscriber is go-zero's discov.Subscriber with a listener that
// reads Values on each notification, as go-zero's own gRPC resolver does.
// go-zero watches key+"/", so the key is the prefix without its slash.
func goZeroSubscriber(b *testing.B, srv *etcdtest.Server, n int, m *markers) func() {
	goZeroRan = true
	logx.Disable()
	sub, err := discov.NewSubscriber(srv.Endpoints(), strings.TrimSuffix(prefix, "/"))
	if err != nil {
		b.Fatal(err)
	}
	var closed atomic.Bool
	sub.AddListener(func() {
		if closed.Load() {
			return
		}
		for _, v := range sub.Values() {
			m.saw(v)
		}
	})
	// go-zero loads the prefix in the background, through a cluster
	// client it shares between subscribers of the same endpoints.
	for deadline := time.Now().Add(time.Minute); len(sub.Values()) != n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			closed.Store(true)
			sub.Close()
			b.Fatalf("go-zero subscriber holds %d instances after a minute, want %d", len(sub.Values()), n)
		}
	}
	return func() {
		closed.Store(true)
		sub.Close()
	}
}

// BenchmarkChurn measures, on one embedded etcd holding N instances under
// one prefix, each consumer of that prefix while the instances change at
// cfg.rate values per second: the lag from a marker's put until the
// consumer sees it, the CPU the consumer adds to a phase without consumer,
// and its heap per instance. Each consumer is measured once per run with
// b.N = 1, so -count 3 gives three measurements; run it with -benchtime 1x.
func BenchmarkChurn(b *testing.B) {
	cfg := churnConfigFromEnv(b)
	srv := etcdtest.NewServer(b)
	admin := srv.Client(b)
	consumers := []struct {
		impl  string
		start churnConsumer
	}{
		{"rawwatch", rawWatch},
		{"instancer", instancerEvents},
		{"endpointer", etcdsdEndpointer},
		{"gokit-endpointer", goKitEndpointer},
		{"gozero", goZeroSubscriber},
	}
	for _, n := range cfg.ns {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			preload(b, admin, n)
			base := churn(b, admin, n, cfg, newMarkers())
			clearMarkers(b, admin)

			reported := make(map[string]map[string]float64)
			for _, c := range consumers {
				b.Run("impl="+c.impl, func(b *testing.B) {
					// Measured afresh on each run with b.N = 1 (each -count
					// starts so); larger b.N report the last figures again.
					metrics, ok := reported[c.impl]
					if !ok || b.N == 1 {
						metrics = measureConsumer(b, srv, admin, n, cfg, base, c.start)
						reported[c.impl] = metrics
					}
					for unit, v := range metrics {
						b.ReportMetric(v, unit)
					}
					b.ReportMetric(0, "ns/op")
				})
			}
		})
	}
}

// measureConsumer builds one consumer, runs a churn phase under it and
// returns its metrics by unit.
func measureConsumer(b *testing.B, srv *etcdtest.Server, admin *clientv3.Client, n int, cfg churnConfig, base churnPhase, start churnConsumer) map[string]float64 {
	time.Sleep(settleTime)
	heapBefore := heapInUse()
	m := newMarkers()
	stop := start(b, srv, n, m)
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	time.Sleep(settleTime)
	heap := heapInUse() - heapBefore

	phase := churn(b, admin, n, cfg, m)
	b.Logf("churn phase: %.2f CPU-s at %.0f changes/s (%d dropped); without consumer: %.2f CPU-s at %.0f changes/s (%d dropped)",
		phase.cpu.Seconds(), phase.rate, phase.dropped, base.cpu.Seconds(), base.rate, base.dropped)
	lags, unseen := m.wait(time.Now().Add(cfg.drain))
	stop()
	stopped = true
	clearMarkers(b, admin)
	if len(lags) == 0 {
		b.Fatal("no marker was put")
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return map[string]float64{
		"lag-p50-ms":     ms(lags[len(lags)/2]),
		"lag-p99-ms":     ms(lags[len(lags)*99/100]),
		"markers-unseen": float64(unseen),
		"cpu-s":          (phase.cpu - base.cpu).Seconds(),
		"heap-B/inst":    float64(heap) / float64(n),
		"changes/s":      phase.rate,
	}
}
