package grpcsd

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
)

// fakeCC records what a resolver tells gRPC.
type fakeCC struct {
	resolver.ClientConn
	states chan resolver.State
	errs   chan error
}

func newFakeCC() *fakeCC {
	return &fakeCC{states: make(chan resolver.State, 100), errs: make(chan error, 100)}
}

func (cc *fakeCC) UpdateState(s resolver.State) error { cc.states <- s; return nil }
func (cc *fakeCC) ReportError(err error)              { cc.errs <- err }

func (cc *fakeCC) nextState(t *testing.T) resolver.State {
	t.Helper()
	select {
	case s := <-cc.states:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no state update within 5s")
	}
	return resolver.State{}
}

func (cc *fakeCC) nextErr(t *testing.T) error {
	t.Helper()
	select {
	case err := <-cc.errs:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("no error report within 5s")
	}
	return nil
}

// fakeInstancer is an sd.Instancer the test drives, delivering like go-kit's
// (the current state synchronously on Register).
type fakeInstancer struct {
	mu      sync.Mutex
	current sd.Event
	subs    map[chan<- sd.Event]bool
	stopped chan struct{}
}

func newFakeInstancer(instances ...string) *fakeInstancer {
	return &fakeInstancer{current: sd.Event{Instances: instances}, subs: make(map[chan<- sd.Event]bool), stopped: make(chan struct{})}
}

func (f *fakeInstancer) Register(ch chan<- sd.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs[ch] = true
	ch <- f.current
}

func (f *fakeInstancer) Deregister(ch chan<- sd.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.subs, ch)
}

func (f *fakeInstancer) Stop() { close(f.stopped) }

func (f *fakeInstancer) send(ev sd.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.current = ev
	for ch := range f.subs {
		ch <- ev
	}
}

func target(t *testing.T, s string) resolver.Target {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return resolver.Target{URL: *u}
}

// build builds a resolver for target on a Builder whose factory hands out in.
func build(t *testing.T, in sd.Instancer, tgt string) (*fakeCC, resolver.Resolver) {
	t.Helper()
	b, err := NewBuilder(nil, WithInstancerFactory(func(ctx context.Context, prefix string) (sd.Instancer, error) {
		if prefix != "/services/app/" {
			t.Errorf("factory got prefix %q, want /services/app/", prefix)
		}
		return in, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	cc := newFakeCC()
	r, err := b.Build(target(t, tgt), cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return cc, r
}

func TestResolverSendsInstancesWithTheirMetadata(t *testing.T) {
	in := newFakeInstancer(
		`{"id":"app-1","name":"app","version":"v1","address":"10.0.0.1:9000","metadata":{"zone":"a"},"weight":3}`,
		"10.0.0.2:9000",
		"http://10.0.0.3:8080",
	)
	cc, r := build(t, in, "etcd:///services/app/")
	defer r.Close()
	s := cc.nextState(t)
	if len(s.Endpoints) != 3 || len(s.Addresses) != 3 {
		t.Fatalf("state = %+v, want 3 endpoints and addresses", s)
	}
	want := []string{"10.0.0.1:9000", "10.0.0.2:9000", "10.0.0.3:8080"}
	for i, ep := range s.Endpoints {
		if ep.Addresses[0].Addr != want[i] || s.Addresses[i].Addr != want[i] {
			t.Errorf("endpoint %d = %v, address %v; want %s", i, ep.Addresses[0].Addr, s.Addresses[i].Addr, want[i])
		}
	}
	inst, ok := InstanceFromEndpoint(s.Endpoints[0])
	if !ok || inst.ID != "app-1" || inst.Version != "v1" || inst.Weight != 3 || inst.Metadata["zone"] != "a" {
		t.Errorf("endpoint instance = %+v, %v; want app-1 v1 weight 3 zone a", inst, ok)
	}
	if a := s.Endpoints[0].Addresses[0].Attributes; a != nil {
		t.Errorf("endpoint address attributes = %v, want none: gRPC would reconnect on every metadata change", a)
	}
	if inst2, ok := InstanceFromAddress(s.Addresses[0]); !ok || inst2.ID != "app-1" {
		t.Errorf("address instance = %+v, %v; want app-1", inst2, ok)
	}
	if inst3, ok := InstanceFromAddress(s.Addresses[2]); !ok || inst3.Address != "http://10.0.0.3:8080" {
		t.Errorf("address instance = %+v, %v; want the registered address kept", inst3, ok)
	}
}

func TestResolverSkipsMalformedAndDuplicateAddresses(t *testing.T) {
	in := newFakeInstancer(`{"address":"10.0.0.1:9000","version":"v1"}`, `{"address":`, "10.0.0.1:9000", "bad address", "10.0.0.2:9000")
	cc, r := build(t, in, "etcd:///services/app/")
	defer r.Close()
	s := cc.nextState(t)
	if len(s.Endpoints) != 2 || s.Endpoints[0].Addresses[0].Addr != "10.0.0.1:9000" || s.Endpoints[1].Addresses[0].Addr != "10.0.0.2:9000" {
		t.Fatalf("endpoints = %+v, want 10.0.0.1:9000 (v1) and 10.0.0.2:9000", s.Endpoints)
	}
	if inst, _ := InstanceFromEndpoint(s.Endpoints[0]); inst.Version != "v1" {
		t.Errorf("first of the duplicates kept = %+v, want the v1 one", inst)
	}
}

func TestResolverReportsErrorsAndKeepsAddresses(t *testing.T) {
	in := newFakeInstancer("10.0.0.1:9000")
	cc, r := build(t, in, "etcd:///services/app/")
	defer r.Close()
	cc.nextState(t)
	outage := errors.New("etcd unreachable")
	in.send(sd.Event{Instances: []string{"10.0.0.1:9000"}, Err: outage})
	if err := cc.nextErr(t); !errors.Is(err, outage) || !strings.Contains(err.Error(), `"/services/app/"`) {
		t.Errorf("reported %v, want the outage naming the prefix", err)
	}
	select {
	case s := <-cc.states:
		t.Fatalf("state sent during the outage: %+v", s)
	default:
	}
	in.send(sd.Event{Instances: []string{"10.0.0.1:9000", "10.0.0.2:9000"}})
	if s := cc.nextState(t); len(s.Endpoints) != 2 {
		t.Errorf("after recovery: %+v, want 2 endpoints", s.Endpoints)
	}
}

func TestResolverSendsEmptyStateWhenAllInstancesGo(t *testing.T) {
	in := newFakeInstancer("10.0.0.1:9000")
	cc, r := build(t, in, "etcd:///services/app/")
	defer r.Close()
	cc.nextState(t)
	in.send(sd.Event{})
	if s := cc.nextState(t); len(s.Endpoints) != 0 {
		t.Errorf("state = %+v, want no endpoint", s)
	}
}

func TestResolverCloseStopsTheInstancer(t *testing.T) {
	in := newFakeInstancer("10.0.0.1:9000")
	cc, r := build(t, in, "etcd:///services/app/")
	cc.nextState(t)
	r.Close()
	select {
	case <-in.stopped:
	default:
		t.Fatal("Close returned without stopping the Instancer")
	}
	if len(in.subs) != 0 {
		t.Errorf("still subscribed after Close: %d", len(in.subs))
	}
}

func TestResolverRetriesTheFactoryAndReportsEachFailure(t *testing.T) {
	in := newFakeInstancer("10.0.0.1:9000")
	var calls int
	down := errors.New("dial etcd: connection refused")
	b, err := NewBuilder(nil, WithInstancerFactory(func(ctx context.Context, prefix string) (sd.Instancer, error) {
		calls++
		if calls < 3 {
			return nil, down
		}
		return in, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	cc := newFakeCC()
	r, err := b.Build(target(t, "etcd:///services/app/"), cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for range 2 {
		if err := cc.nextErr(t); !errors.Is(err, down) {
			t.Errorf("reported %v, want the factory error", err)
		}
	}
	if s := cc.nextState(t); len(s.Endpoints) != 1 {
		t.Errorf("state = %+v, want 1 endpoint once the factory succeeds", s)
	}
}

func TestResolverCloseWhileFactoryKeepsFailing(t *testing.T) {
	b, err := NewBuilder(nil, WithInstancerFactory(func(ctx context.Context, prefix string) (sd.Instancer, error) {
		return nil, errors.New("etcd down")
	}))
	if err != nil {
		t.Fatal(err)
	}
	cc := newFakeCC()
	r, err := b.Build(target(t, "etcd:///services/app/"), cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cc.nextErr(t)
	done := make(chan struct{})
	go func() { r.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not return within 2s while retrying")
	}
}

func TestBuildRejectsBadTargets(t *testing.T) {
	b, err := NewBuilder(nil, WithInstancerFactory(func(context.Context, string) (sd.Instancer, error) {
		t.Error("factory called for a bad target")
		return nil, errors.New("unreachable")
	}))
	if err != nil {
		t.Fatal(err)
	}
	for tgt, want := range map[string]string{
		"etcd:///":                   "no prefix",
		"etcd://host:2379/services/": `authority "host:2379" not supported`,
		"etcd:///a%00b":              "control characters",
		"etcd:///services/app%20":    "white space",
	} {
		_, err := b.Build(target(t, tgt), newFakeCC(), resolver.BuildOptions{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Build(%q) = %v, want an error containing %q", tgt, err, want)
		}
	}
}

func TestTargetWithoutTrailingSlashFollowsItsDirectory(t *testing.T) {
	for tgt, want := range map[string]string{
		"etcd:///services/app":  "/services/app/",
		"etcd:///services/app/": "/services/app/",
		"etcd:services/app":     "services/app/",
	} {
		got := make(chan string, 1)
		b, err := NewBuilder(nil, WithInstancerFactory(func(_ context.Context, prefix string) (sd.Instancer, error) {
			got <- prefix
			return newFakeInstancer(), nil
		}))
		if err != nil {
			t.Fatal(err)
		}
		r, err := b.Build(target(t, tgt), newFakeCC(), resolver.BuildOptions{})
		if err != nil {
			t.Fatalf("Build(%q): %v", tgt, err)
		}
		if p := <-got; p != want {
			t.Errorf("Build(%q) follows %q, want %q: a prefix without its slash takes in sibling prefixes", tgt, p, want)
		}
		r.Close()
	}
}

func TestResolverOpaqueTarget(t *testing.T) {
	in := newFakeInstancer("10.0.0.1:9000")
	b, _ := NewBuilder(nil, WithInstancerFactory(func(ctx context.Context, prefix string) (sd.Instancer, error) {
		if prefix != "services/app/" {
			t.Errorf("prefix = %q, want services/app/", prefix)
		}
		return in, nil
	}))
	r, err := b.Build(target(t, "etcd:services/app/"), newFakeCC(), resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}

func TestNewBuilderRejectsBadInput(t *testing.T) {
	if _, err := NewBuilder(nil); err == nil || !strings.Contains(err.Error(), "nil etcd client") {
		t.Errorf("NewBuilder(nil) = %v, want a nil client error", err)
	}
	factory := WithInstancerFactory(func(context.Context, string) (sd.Instancer, error) { return nil, nil })
	for _, s := range []string{"", "Etcd", "1etcd", "et cd"} {
		if _, err := NewBuilder(nil, factory, WithScheme(s)); err == nil || !strings.Contains(err.Error(), "scheme") {
			t.Errorf("WithScheme(%q): %v, want a scheme error", s, err)
		}
	}
	b, err := NewBuilder(nil, factory, WithScheme("discovery+v2"))
	if err != nil || b.Scheme() != "discovery+v2" {
		t.Errorf("NewBuilder with scheme discovery+v2 = %v, %v", b, err)
	}
}

// TestResolverErrorsCarryNoGRPCStatus: gRPC ends even a wait-for-ready RPC
// at a picker error that carries a status, and before the first state it
// uses the resolver's error as the picker's; an etcd client error may
// carry one. The resolver's reports keep the cause for errors.Is, never its
// status.
func TestResolverErrorsCarryNoGRPCStatus(t *testing.T) {
	refused := status.Error(codes.Unavailable, "connection refused")
	calls := 0
	factory := func(ctx context.Context, prefix string) (sd.Instancer, error) {
		if calls++; calls == 1 {
			return nil, refused
		}
		return newFakeInstancer("10.0.0.1:9000"), nil
	}
	b, err := NewBuilder(nil, WithInstancerFactory(factory))
	if err != nil {
		t.Fatal(err)
	}
	cc := newFakeCC()
	r, err := b.Build(resolver.Target{URL: url.URL{Scheme: "etcd", Path: "/services/app/"}}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := cc.nextErr(t)
	if _, ok := status.FromError(got); ok {
		t.Errorf("reported %v, which carries a gRPC status", got)
	}
	if !errors.Is(got, refused) || !strings.Contains(got.Error(), "connection refused") {
		t.Errorf("reported %v, want the refusal", got)
	}
	cc.nextState(t)
}
