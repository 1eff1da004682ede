package endpointer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/kit/sd/lb"

	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
)

func TestNewRejectsBadInput(t *testing.T) {
	f := newFleet()
	src := source(t)
	var nilInstancer *etcdv3.Instancer
	cases := []struct {
		name      string
		instancer sd.Instancer
		factory   sd.Factory
		opts      []Option
		want      string
	}{
		{"nil instancer", nil, f.factory, nil, "instancer is nil"},
		{"typed nil instancer", nilInstancer, f.factory, nil, "instancer is nil"},
		{"nil factory", src, nil, nil, "factory is nil"},
		{"nil option", src, f.factory, []Option{nil}, "option is nil"},
		{"subset size 0", src, f.factory, []Option{WithSubset(0, "c")}, "subset size 0"},
		{"subset size -3", src, f.factory, []Option{WithSubset(-3, "c")}, "subset size -3"},
		{"empty client ID", src, f.factory, []Option{WithSubset(2, "")}, "client ID is empty"},
		{"unknown strategy", src, f.factory, []Option{WithStrategy(Strategy(9))}, "unknown strategy Strategy(9)"},
		{"zero attempts", src, f.factory, []Option{WithRetry(0, time.Second)}, "max attempts 0"},
		{"negative timeout", src, f.factory, []Option{WithRetry(2, -time.Second)}, "timeout -1s"},
		{"zero backoff", src, f.factory, []Option{WithBackoff(0, time.Second)}, "backoff base 0s"},
		{"max below base", src, f.factory, []Option{WithBackoff(time.Second, time.Millisecond)}, "max 1ms"},
		{"nil retryable", src, f.factory, []Option{WithRetryable(nil)}, "retryable hook is nil"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := New(c.instancer, c.factory, nil, c.opts...)
			if err == nil {
				e.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "endpointer: new: ") {
				t.Fatalf("error %q: want ErrInvalid naming %q", err, c.want)
			}
		})
	}
}

func TestNewIsReadyWhenItReturns(t *testing.T) {
	f := newFleet()
	e := newEndpointer(t, source(t, "10.0.0.1:80", "10.0.0.2:80"), f)
	eps, err := e.Endpoints()
	if err != nil || len(eps) != 2 {
		t.Fatalf("Endpoints = %d, %v; want 2 at once", len(eps), err)
	}
}

func TestEndpointsMixWithGoKitBalancers(t *testing.T) {
	f := newFleet()
	e := newEndpointer(t, source(t, "a:1", "b:1", "c:1"), f)
	var _ sd.Endpointer = e
	rr := lb.NewRoundRobin(e)
	seen := map[string]int{}
	for range 30 {
		ep, err := rr.Endpoint()
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ep(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		seen[resp.(string)]++
	}
	if seen["a:1"] != 10 || seen["b:1"] != 10 || seen["c:1"] != 10 {
		t.Fatalf("go-kit round robin over Endpoints = %v, want 10 each", seen)
	}
}

func TestEmptyInstancerGivesErrNoEndpoints(t *testing.T) {
	e := newEndpointer(t, source(t), newFleet())
	_, err := e.Endpoint()(context.Background(), nil)
	if !errors.Is(err, ErrNoEndpoints) || !errors.Is(err, lb.ErrNoEndpoints) {
		t.Fatalf("err = %v, want ErrNoEndpoints", err)
	}
}

func TestDiscoveryErrorKeepsInstancesAndIsReportedWhenEmpty(t *testing.T) {
	src := source(t, "a:1")
	e := newEndpointer(t, src, newFleet())
	outage := errors.New("etcd unreachable")
	src.SetErr(outage)
	itest.Eventually(t, 5*time.Second, "error recorded", func() bool { return e.sourceErr() != nil })
	if got := call(t, e, context.Background()); got != "a:1" {
		t.Fatalf("during outage got %q, want the last instance a:1", got)
	}
	set(src)
	waitLen(t, e, 0)
	src.SetErr(outage)
	itest.Eventually(t, 5*time.Second, "error recorded", func() bool { return e.sourceErr() != nil })
	_, err := e.Pick(context.Background())
	if !errors.Is(err, ErrNoEndpoints) || !errors.Is(err, outage) {
		t.Fatalf("err = %v, want ErrNoEndpoints wrapping the discovery error", err)
	}
	if _, err := e.Endpoints(); !errors.Is(err, outage) {
		t.Fatalf("Endpoints err = %v, want the discovery error", err)
	}
}

func TestEndpointsAreReusedAndClosedWhenTheirAddressLeaves(t *testing.T) {
	f := newFleet()
	src := source(t, "a:1", "b:1")
	e := newEndpointer(t, src, f)
	set(src, "a:1", "c:1")
	itest.Eventually(t, 5*time.Second, "b:1 gone", func() bool { return f.get("b:1").closes.Load() == 1 })
	waitLen(t, e, 2)
	if n := f.factoryCalls("a:1"); n != 1 {
		t.Fatalf("factory called %d times for a:1, which stayed; want 1", n)
	}
	if f.get("a:1").closes.Load() != 0 {
		t.Fatal("a:1 closed though it stayed")
	}
	e.Close()
	if f.get("a:1").closes.Load() != 1 || f.get("c:1").closes.Load() != 1 || f.get("b:1").closes.Load() != 1 {
		t.Fatal("Close did not close every endpoint exactly once")
	}
	if _, err := e.Pick(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Pick after Close: %v, want ErrClosed", err)
	}
	if _, err := e.Endpoints(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Endpoints after Close: %v, want ErrClosed", err)
	}
	e.Close()
}

func TestRetiredEndpointClosesAfterItsCallsReturn(t *testing.T) {
	f := newFleet()
	b := f.get("a:1")
	b.block = make(chan struct{})
	b.started = make(chan struct{}, 1)
	src := source(t, "a:1")
	e := newEndpointer(t, src, f)
	done := make(chan error)
	go func() {
		_, err := e.Endpoint()(context.Background(), nil)
		done <- err
	}()
	<-b.started
	set(src, "b:1")
	itest.Eventually(t, 5*time.Second, "a:1 retired", func() bool { return len(e.Instances()) == 1 && e.Instances()[0].Address == "b:1" })
	if b.closes.Load() != 0 {
		t.Fatal("closed while a call was in flight")
	}
	close(b.block)
	if err := <-done; err != nil {
		t.Fatalf("in-flight call: %v", err)
	}
	if b.closes.Load() != 1 {
		t.Fatalf("closes = %d after the last call returned, want 1", b.closes.Load())
	}
}

func TestWeightChangeTakesEffectWithoutReconnecting(t *testing.T) {
	f := newFleet()
	src := source(t, jsonValue("a", "a:1", "", 1), jsonValue("b", "b:1", "", 1))
	e := newEndpointer(t, src, f, WithStrategy(Weighted), WithSeed(1))
	set(src, jsonValue("a", "a:1", "", 9), jsonValue("b", "b:1", "", 1))
	itest.Eventually(t, 5*time.Second, "weight 9", func() bool {
		for _, in := range e.Instances() {
			if in.Address == "a:1" && in.Weight == 9 {
				return true
			}
		}
		return false
	})
	got := map[string]int{}
	for range 10000 {
		got[call(t, e, context.Background())]++
	}
	if got["a:1"] < 8700 || got["a:1"] > 9300 {
		t.Fatalf("a:1 got %d of 10000 with weight 9 of 10, want about 9000", got["a:1"])
	}
	if f.factoryCalls("a:1") != 1 || f.get("a:1").closes.Load() != 0 {
		t.Fatal("a weight change reconnected the endpoint")
	}
}

// A Feed parses and logs bad values itself; an sd.Event carries them.
func TestBadValuesAreSkippedAndLoggedOnce(t *testing.T) {
	f := newFleet()
	src := eventSource(t, "a:1", `{"address":`)
	logs := &countingLogger{}
	e, err := New(src, f.factory, logs)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if got := call(t, e, context.Background()); got != "a:1" {
		t.Fatalf("got %q", got)
	}
	set(src, "a:1", "b:1", `{"address":`)
	waitLen(t, e, 2)
	if n := logs.count("instance value skipped"); n != 1 {
		t.Fatalf("bad value logged %d times over two events, want once", n)
	}
}

func TestFactoryErrorSkipsInstanceAndRetriesOnNextEvent(t *testing.T) {
	f := newFleet()
	f.refuse["b:1"] = true
	src := source(t, "a:1", "b:1")
	e := newEndpointer(t, src, f)
	if n := len(e.Instances()); n != 1 {
		t.Fatalf("%d instances, want 1 (b:1 refused by the factory)", n)
	}
	f.mu.Lock()
	f.refuse["b:1"] = false
	f.mu.Unlock()
	set(src, "a:1", "b:1", "c:1")
	waitLen(t, e, 3)
}

func TestSameAddressSharesOneEndpoint(t *testing.T) {
	f := newFleet()
	src := source(t, jsonValue("x1", "x:1", "v1", 0), jsonValue("x2", "x:1", "v2", 0))
	e := newEndpointer(t, src, f)
	eps, _ := e.Endpoints()
	if len(eps) != 1 || f.factoryCalls("x:1") != 1 {
		t.Fatalf("%d endpoints, %d factory calls; want 1 and 1", len(eps), f.factoryCalls("x:1"))
	}
	if got := call(t, e, WithVersion(context.Background(), "v2")); got != "x:1" {
		t.Fatalf("v2 got %q", got)
	}
}

func TestInstancesAreCopies(t *testing.T) {
	e := newEndpointer(t, source(t, jsonValue("a", "a:1", "v1", 0, "zone", "a")), newFleet())
	e.Instances()[0].Metadata["zone"] = "changed"
	if e.Instances()[0].Metadata["zone"] != "a" {
		t.Fatal("Instances returned the Endpointer's own metadata map")
	}
}

func TestWorksWithGoKitsOwnInstancer(t *testing.T) {
	f := newFleet()
	e, err := New(sd.FixedInstancer{"b:1", "a:1", `{"address":"c:1","version":"v2"}`}, f.factory, itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if n := len(e.Instances()); n != 3 {
		t.Fatalf("%d instances right after New, want 3", n)
	}
	if got := call(t, e, WithVersion(context.Background(), "v2")); got != "c:1" {
		t.Fatalf("v2 got %q", got)
	}
}
