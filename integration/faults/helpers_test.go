package faults

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
)

// Timing of every scenario. A short dial timeout makes an outage visible in
// a fraction of a second; a 2 s TTL lets a lease expire within a test.
const (
	dialTimeout    = 400 * time.Millisecond
	requestTimeout = time.Second
	heartbeat      = 250 * time.Millisecond
	ttl            = 2 * time.Second
	// converge bounds how long the invariants may take to hold again after
	// a fault heals: gRPC waits about 1 s before it dials again after a
	// failed connection, then a heartbeat or a snapshot retry follows.
	converge = 15 * time.Second
)

func shortTTL() *etcdv3.TTLOption { return etcdv3.NewTTLOption(heartbeat, ttl) }

// logTail keeps the last lines the library logs and writes them to the test
// log if the test fails; a soak logs too much to show it all.
type logTail struct {
	mu    sync.Mutex
	lines []string
	next  int
	count map[string]int // msg → how often it was logged
}

const tailLines = 300

func newLogTail(t testing.TB) *logTail {
	l := &logTail{count: map[string]int{}}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Logf("last library log lines:\n%s", strings.Join(append(l.lines[l.next:], l.lines[:l.next]...), "\n"))
	})
	return l
}

func (l *logTail) Log(kv ...any) error {
	var b strings.Builder
	b.WriteString(time.Now().Format("15:04:05.000"))
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
		if kv[i] == "msg" {
			l.mu.Lock()
			l.count[fmt.Sprint(kv[i+1])]++
			l.mu.Unlock()
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) < tailLines {
		l.lines = append(l.lines, b.String())
		return nil
	}
	l.lines[l.next] = b.String()
	l.next = (l.next + 1) % tailLines
	return nil
}

// logged returns how often msg was logged.
func (l *logTail) logged(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count[msg]
}

// newClient connects an etcdv3 client with the scenario timing to
// endpoints and closes it at cleanup. Cleanups run last-registered first,
// so it closes before the etcd it was given stops, which then stops fast.
func newClient(t testing.TB, logger log.Logger, endpoints []string, opts ...func(*etcdv3.ClientOptions)) *etcdv3.EtcdClient {
	t.Helper()
	o := etcdv3.ClientOptions{DialTimeout: dialTimeout, RequestTimeout: requestTimeout, Logger: logger}
	for _, f := range opts {
		f(&o)
	}
	c, err := etcdv3.NewEtcdClient(context.Background(), endpoints, o)
	if err != nil {
		t.Fatalf("new client of %v: %v", endpoints, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// proxies puts one fault proxy in front of each endpoint, so that a client
// of Endpoints can be cut off from all of etcd at once.
type proxies []*etcdtest.Proxy

func newProxies(t testing.TB, endpoints []string) proxies {
	t.Helper()
	ps := make(proxies, len(endpoints))
	for i, ep := range endpoints {
		ps[i] = etcdtest.NewProxy(t, ep)
	}
	return ps
}

func (ps proxies) Endpoints() []string {
	eps := make([]string, len(ps))
	for i, p := range ps {
		eps[i] = p.Endpoint()
	}
	return eps
}

// cut partitions the clients behind ps from etcd: traffic vanishes and new
// connections hang, as behind a dead link, so gRPC leaves READY at once.
func (ps proxies) cut() {
	for _, p := range ps {
		p.Blackhole()
		p.DropConnections()
	}
}

// heal ends the partition, and drops the hung connections so that clients
// dial afresh instead of waiting for gRPC's 20 s connect timeout.
func (ps proxies) heal() {
	for _, p := range ps {
		p.Unblackhole()
		p.DropConnections()
	}
}

func (ps proxies) setLatency(d time.Duration) {
	for _, p := range ps {
		p.SetLatency(d)
	}
}

// recorder keeps every event a subscriber received.
type recorder struct {
	ch   chan sd.Event
	quit chan struct{}
	done chan struct{}

	mu      sync.Mutex
	events  []sd.Event
	changed chan struct{} // closed and replaced on every event
}

// subscribe registers a recorder with in and deregisters it at cleanup.
func subscribe(t testing.TB, in sd.Instancer) *recorder {
	r := &recorder{ch: make(chan sd.Event), quit: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			select {
			case ev := <-r.ch:
				r.mu.Lock()
				r.events = append(r.events, ev)
				close(r.changed)
				r.changed = make(chan struct{})
				r.mu.Unlock()
			case <-r.quit:
				return
			}
		}
	}()
	in.Register(r.ch)
	t.Cleanup(func() {
		in.Deregister(r.ch)
		close(r.quit)
		<-r.done
	})
	return r
}

// last returns the last event and a channel closed at the next one.
func (r *recorder) last() (sd.Event, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return sd.Event{}, r.changed
	}
	return r.events[len(r.events)-1], r.changed
}

// since returns the events received from index i on, and the next index.
func (r *recorder) since(i int) ([]sd.Event, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sd.Event(nil), r.events[i:]...), len(r.events)
}

// waitFor waits until the last event satisfies cond.
func (r *recorder) waitFor(t testing.TB, within time.Duration, what string, cond func(sd.Event) bool) sd.Event {
	t.Helper()
	timeout := time.After(within)
	for {
		ev, changed := r.last()
		if cond(ev) {
			return ev
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("not within %v: %s; last event %+v", within, what, ev)
		}
	}
}

// eventually polls cond every 20 ms until it holds or within passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
