package faults

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
)

// Timing of every scenario. A short dial timeout makes an outage visible in
// a fraction of a second; a 2 s TTL lets a lease expire within a test.
const (
	dialTimeout    = 400 * time.Millisecond
	requestTimeout = time.Second
	heartbeat      = etcdv3.MinHeartbeat
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
