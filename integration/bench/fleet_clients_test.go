package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	kitsd "github.com/go-kit/kit/sd"
	kitetcd "github.com/go-kit/kit/sd/etcdv3"
	"github.com/go-kit/log"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdsd/etcdsd/etcdv3"
)

// fleetMarkerKey sorts after every instance key ("/bench/svc/00042"), so
// that in go-kit's list, which is in key order, markers are the last
// entries; fleetMarkerNet starts no instance's address.
const (
	fleetMarkerKey = prefix + "~mark-"
	fleetMarkerNet = "10.254."
	// fleetMarkerTail is how many entries at the end of a go-kit list may
	// be markers; a phase puts fewer at once.
	fleetMarkerTail = 256
	// fleetReadyTimeout bounds how long one client may take to hold all
	// instances when it starts.
	fleetReadyTimeout = 2 * time.Minute
)

// A mark is one write whose arrival at every client is timed.
type mark struct {
	value string
	put   time.Time // just before the put
	left  atomic.Int64
	all   chan struct{} // closed when left reaches 0
	took  time.Duration // from put until the last client saw it; set before all closes
}

// A probe times marks across a fleet of clients.
type probe struct {
	clients int
	seq     atomic.Int64
	open    atomic.Pointer[[]*mark] // marks not yet seen by every client
	mu      sync.Mutex              // serializes changes to open
}

func newProbe(clients int) *probe {
	p := &probe{clients: clients}
	p.open.Store(&[]*mark{})
	return p
}

// next returns the key of a new mark and the mark, timed from now; the
// caller puts key = m.value.
func (p *probe) next() (string, *mark) {
	seq := p.seq.Add(1)
	m := &mark{
		value: fmt.Sprintf("%s%d.%d:%d", fleetMarkerNet, seq/256%256, seq%256, 9000),
		all:   make(chan struct{}),
	}
	m.left.Store(int64(p.clients))
	p.mu.Lock()
	open := append(slices.Clone(*p.open.Load()), m)
	p.open.Store(&open)
	p.mu.Unlock()
	m.put = time.Now()
	return fmt.Sprintf("%s%06d", fleetMarkerKey, seq), m
}

// seenByAll records that the last client saw m.
func (p *probe) seenByAll(m *mark) {
	m.took = time.Since(m.put)
	close(m.all)
	p.mu.Lock()
	open := slices.DeleteFunc(slices.Clone(*p.open.Load()), func(o *mark) bool { return o == m })
	p.open.Store(&open)
	p.mu.Unlock()
}

// A watcherState is one client's record of the marks it saw; only the
// client's own goroutine uses it.
type watcherState struct {
	p    *probe
	seen map[*mark]bool
}

func newWatcherState(p *probe) *watcherState {
	return &watcherState{p: p, seen: make(map[*mark]bool)}
}

// check tells the probe of every open mark that has(value) reports.
func (w *watcherState) check(has func(value string) bool) {
	for _, m := range *w.p.open.Load() {
		if w.seen[m] || !has(m.value) {
			continue
		}
		w.seen[m] = true
		if m.left.Add(-1) == 0 {
			w.p.seenByAll(m)
		}
	}
}

// A fleetKind starts one client of its kind on its own connection to
// endpoints, watching the prefix that holds n instances, and returns once
// the client holds them all; stop stops and waits for everything it started.
type fleetKind struct {
	name  string
	start func(ctx context.Context, endpoints []string, n int, w *watcherState) (stop func(), err error)
}

var fleetKinds = []fleetKind{
	{"raw", startRawClient},
	{"etcdsd", startEtcdsdClient},
	{"gokit", startGoKitClient},
}

// startRawClient is the floor: a clientv3 Get of the prefix, then a watch
// from the next revision applied into a map. clientv3 resumes a broken
// watch from its last revision on its own.
func startRawClient(ctx context.Context, endpoints []string, n int, w *watcherState) (func(), error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("raw client of %v: %w", endpoints, err)
	}
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("raw client: get %s: %w", prefix, err)
	}
	if len(resp.Kvs) < n {
		cli.Close()
		return nil, fmt.Errorf("raw client: get %s: %d instances, want %d", prefix, len(resp.Kvs), n)
	}
	view := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		view[string(kv.Key)] = string(kv.Value)
	}
	wctx, cancel := context.WithCancel(ctx)
	wch := cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
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
				w.check(func(m string) bool { return m == v })
			}
		}
	}()
	return func() {
		cancel()
		<-done
		cli.Close()
	}, nil
}

// startEtcdsdClient is etcdsd's etcdv3.Instancer on a client of its own,
// with one sd.Event subscriber; its lists are sorted.
func startEtcdsdClient(ctx context.Context, endpoints []string, n int, w *watcherState) (func(), error) {
	c, err := etcdv3.NewClient(ctx, endpoints, etcdv3.ClientOptions{})
	if err != nil {
		return nil, fmt.Errorf("etcdsd client of %v: %w", endpoints, err)
	}
	in, err := etcdv3.NewInstancer(c, prefix, log.NewNopLogger())
	if err != nil {
		c.(io.Closer).Close()
		return nil, fmt.Errorf("etcdsd instancer of %s: %w", prefix, err)
	}
	sorted := func(list []string) func(string) bool {
		return func(v string) bool { _, ok := slices.BinarySearch(list, v); return ok }
	}
	stopSub, err := subscribeFleet(in, n, w, sorted)
	if err != nil {
		in.Stop()
		c.(io.Closer).Close()
		return nil, fmt.Errorf("etcdsd instancer of %s: %w", prefix, err)
	}
	return func() {
		stopSub()
		in.Stop()
		c.(io.Closer).Close()
	}, nil
}

// startGoKitClient is go-kit's sd/etcdv3 Instancer on a client of its own,
// with one sd.Event subscriber. Its lists are in key order, so marks are
// at their end. go-kit's client has no Close: cancelling its context ends
// its watch, and its connection stays open until the process exits.
func startGoKitClient(ctx context.Context, endpoints []string, n int, w *watcherState) (func(), error) {
	goKitRan = true
	kctx, cancel := context.WithCancel(ctx)
	c, err := kitetcd.NewClient(kctx, endpoints, kitetcd.ClientOptions{DialTimeout: 5 * time.Second})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("go-kit client of %v: %w", endpoints, err)
	}
	in, err := kitetcd.NewInstancer(c, prefix, log.NewNopLogger())
	if err != nil {
		cancel()
		return nil, fmt.Errorf("go-kit instancer of %s: %w", prefix, err)
	}
	tail := func(list []string) func(string) bool {
		return func(v string) bool {
			return slices.Contains(list[max(0, len(list)-fleetMarkerTail):], v)
		}
	}
	stopSub, err := subscribeFleet(in, n, w, tail)
	if err != nil {
		in.Stop()
		cancel()
		return nil, fmt.Errorf("go-kit instancer of %s: %w", prefix, err)
	}
	return func() {
		stopSub()
		in.Stop()
		cancel()
	}, nil
}

// subscribeFleet registers one channel with in, waits until an event holds
// n instances, and then checks every event for marks in its own goroutine
// until the returned stop. If no event holds n instances within
// fleetReadyTimeout, it stops and returns an error.
func subscribeFleet(in kitsd.Instancer, n int, w *watcherState, lookup func([]string) func(string) bool) (func(), error) {
	ch := make(chan kitsd.Event, 1)
	in.Register(ch)
	ready := make(chan struct{})
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		waiting := true
		for {
			select {
			case ev := <-ch:
				if ev.Err != nil {
					continue
				}
				if waiting && len(ev.Instances) >= n {
					waiting = false
					close(ready)
				}
				w.check(lookup(ev.Instances))
			case <-quit:
				return
			}
		}
	}()
	stop := func() {
		in.Deregister(ch)
		close(quit)
		<-done
	}
	timer := time.NewTimer(fleetReadyTimeout)
	defer timer.Stop()
	select {
	case <-ready:
		return stop, nil
	case <-timer.C:
		stop()
		return nil, fmt.Errorf("no event with %d instances within %v", n, fleetReadyTimeout)
	}
}
