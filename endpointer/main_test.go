package endpointer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"go.uber.org/goleak"

	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/pipeline"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// errBackend is what a failing backend returns.
var errBackend = errors.New("backend failed")

// backend is one fake instance: its endpoint answers with its address.
type backend struct {
	addr    string
	calls   atomic.Int64
	fail    atomic.Bool
	closes  atomic.Int32
	block   chan struct{} // when set, calls wait for it to close
	started chan struct{} // when set, receives once per call start
}

func (b *backend) endpoint(ctx context.Context, _ any) (any, error) {
	b.calls.Add(1)
	if b.started != nil {
		b.started <- struct{}{}
	}
	if b.block != nil {
		<-b.block
	}
	if b.fail.Load() {
		return nil, fmt.Errorf("%s: %w", b.addr, errBackend)
	}
	return b.addr, nil
}

func (b *backend) Close() error {
	b.closes.Add(1)
	return nil
}

// fleet makes backends on demand and counts factory calls per address.
type fleet struct {
	mu        sync.Mutex
	backends  map[string]*backend
	factories map[string]int
	refuse    map[string]bool
}

func newFleet() *fleet {
	return &fleet{backends: map[string]*backend{}, factories: map[string]int{}, refuse: map[string]bool{}}
}

func (f *fleet) get(addr string) *backend {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.backends[addr]
	if !ok {
		b = &backend{addr: addr}
		f.backends[addr] = b
	}
	return b
}

func (f *fleet) factory(addr string) (endpoint.Endpoint, io.Closer, error) {
	f.mu.Lock()
	f.factories[addr]++
	refuse := f.refuse[addr]
	f.mu.Unlock()
	if refuse {
		return nil, nil, fmt.Errorf("factory refuses %s", addr)
	}
	b := f.get(addr)
	return b.endpoint, b, nil
}

func (f *fleet) factoryCalls(addr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.factories[addr]
}

// src is what the tests feed an Endpointer from: an Instancer whose
// content they replace and whose error they set.
type src interface {
	sd.Instancer
	Replace(map[string]string)
	SetErr(error)
}

// sourceFunc makes a src holding values, stopped at cleanup.
type sourceFunc func(t testing.TB, values ...string) src

// source is the path of etcdv3.Instancer: a pipeline Feed, whose keyed
// changes the Endpointer applies as they come.
func source(t testing.TB, values ...string) src {
	f := &feedSource{f: pipeline.NewFeed()}
	t.Cleanup(f.f.Stop)
	set(f, values...)
	return f
}

// eventSource is any other sd.Instancer, whose full sd.Events the
// Endpointer turns into changes: it hands values to subscribers as they
// are, unparsed and unfiltered, as a third-party Instancer may.
func eventSource(t testing.TB, values ...string) src {
	s := &rawSource{}
	set(s, values...)
	return s
}

// rawSource is eventSource's Instancer.
type rawSource struct {
	mu    sync.Mutex
	chans []chan<- sd.Event
	last  sd.Event
}

func (s *rawSource) Register(ch chan<- sd.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chans = append(s.chans, ch)
	ch <- s.last
}

func (s *rawSource) Deregister(ch chan<- sd.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chans = slices.DeleteFunc(s.chans, func(c chan<- sd.Event) bool { return c == ch })
}

// Stop implements sd.Instancer; there is nothing to stop.
func (s *rawSource) Stop() {}

// Replace sends the distinct values of entries, sorted, to every
// subscriber.
func (s *rawSource) Replace(entries map[string]string) {
	values := slices.Sorted(maps.Values(entries))
	s.send(sd.Event{Instances: slices.Compact(values)})
}

// SetErr sends err with the last instances.
func (s *rawSource) SetErr(err error) {
	s.mu.Lock()
	last := s.last.Instances
	s.mu.Unlock()
	s.send(sd.Event{Instances: last, Err: err})
}

func (s *rawSource) send(ev sd.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = ev
	for _, ch := range s.chans {
		ch <- ev
	}
}

// bothPaths runs test against a Feed and against a plain sd.Instancer.
func bothPaths(t *testing.T, test func(t *testing.T, source sourceFunc)) {
	t.Run("path=feed", func(t *testing.T) { test(t, source) })
	t.Run("path=sd.Event", func(t *testing.T) { test(t, eventSource) })
}

// feedSource offers a pipeline Feed the way etcdv3.Instancer does.
type feedSource struct {
	f   *pipeline.Feed
	rev int64
}

func (s *feedSource) Feed() *pipeline.Feed          { return s.f }
func (s *feedSource) Register(ch chan<- sd.Event)   { s.f.Register(ch) }
func (s *feedSource) Deregister(ch chan<- sd.Event) { s.f.Deregister(ch) }
func (s *feedSource) SetErr(err error)              { s.f.Fail(err) }
func (s *feedSource) Stop()                         { s.f.Stop() }

// Replace brings the Feed to entries, as a snapshot would.
func (s *feedSource) Replace(entries map[string]string) {
	kvs := make([]pipeline.KV, 0, len(entries))
	s.rev++
	for k, v := range entries {
		kvs = append(kvs, pipeline.KV{Key: k, Value: v, ModRev: s.rev})
	}
	s.f.Reset(s.rev, kvs, s.rev == 1)
}

// put and del change one key, as a watch event would.
func (s *feedSource) put(key, value string) {
	s.rev++
	s.f.Apply(s.rev, []pipeline.Change{{Op: pipeline.Put, Key: key, Value: value, Rev: s.rev}})
}

func (s *feedSource) del(key string) {
	s.rev++
	s.f.Apply(s.rev, []pipeline.Change{{Op: pipeline.Delete, Key: key, Rev: s.rev}})
}

// set replaces the source's content by values, keyed by themselves.
func set(c interface{ Replace(map[string]string) }, values ...string) {
	m := make(map[string]string, len(values))
	for _, v := range values {
		m[v] = v
	}
	c.Replace(m)
}

// newEndpointer builds an Endpointer on src and closes it at cleanup.
func newEndpointer(t testing.TB, src sd.Instancer, f *fleet, opts ...Option) *Endpointer {
	t.Helper()
	e, err := New(src, f.factory, itest.Logger(t), opts...)
	if err != nil {
		t.Fatalf("new: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// jsonValue is an instance value with a version, weight and metadata.
func jsonValue(id, addr, version string, weight int, md ...string) string {
	in := instance.Instance{ID: id, Address: addr, Version: version, Weight: weight}
	if len(md) > 0 {
		in.Metadata = map[string]string{}
		for i := 0; i+1 < len(md); i += 2 {
			in.Metadata[md[i]] = md[i+1]
		}
	}
	v, err := in.Encode()
	if err != nil {
		panic(err)
	}
	return v
}

// waitLen waits until e routes to exactly the given number of instances.
func waitLen(t testing.TB, e *Endpointer, n int) {
	t.Helper()
	itest.Eventually(t, 5*time.Second, fmt.Sprintf("%d instances", n), func() bool { return len(e.Instances()) == n })
}

// countingLogger counts the log lines whose text contains what.
type countingLogger struct {
	mu    sync.Mutex
	lines []string
}

func (l *countingLogger) Log(kv ...any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprint(kv...))
	return nil
}

func (l *countingLogger) count(what string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.Contains(s, what) {
			n++
		}
	}
	return n
}

// call makes one request through e's retrying endpoint and returns the
// address that answered.
func call(t testing.TB, e *Endpointer, ctx context.Context) string {
	t.Helper()
	resp, err := e.Endpoint()(ctx, nil)
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	return resp.(string)
}

// liveEntries returns e's endpoints by address, wherever the writer keeps
// them. The caller holds e.mu or knows no update runs.
func liveEntries(e *Endpointer) map[string]*entry {
	out := make(map[string]*entry)
	for addr, en := range e.entries {
		out[addr] = en
	}
	for _, m := range e.values {
		if m.routed {
			out[m.address()] = m.entry.Load()
		}
	}
	return out
}
