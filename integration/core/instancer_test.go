package core

import (
	"context"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/go-kit/kit/sd/lb"
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

func TestGoKitEndpointerBalancesOverInstancer(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints())
	const prefix = "/services/gokit-lb/"
	for i := range 3 {
		r := etcdv3.NewRegistrar(c, etcdv3.Service{Key: fmt.Sprintf("%s%d", prefix, i), Value: fmt.Sprintf("127.0.0.1:%d", 8000+i), TTL: shortTTL()}, log.NewNopLogger())
		r.Register()
		t.Cleanup(r.Deregister)
	}
	in := newInstancer(t, c, prefix)
	factory := func(instance string) (endpoint.Endpoint, io.Closer, error) {
		return func(context.Context, any) (any, error) { return instance, nil }, nil, nil
	}
	ep := sd.NewEndpointer(in, factory, log.NewNopLogger())
	defer ep.Close()
	itest.Eventually(t, 5*time.Second, "three endpoints", func() bool {
		eps, err := ep.Endpoints()
		return err == nil && len(eps) == 3
	})
	balancer := lb.NewRoundRobin(ep)
	hits := map[string]int{}
	for range 30 {
		e, err := balancer.Endpoint()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := e(context.Background(), nil)
		hits[got.(string)]++
	}
	for i := range 3 {
		if n := hits[fmt.Sprintf("127.0.0.1:%d", 8000+i)]; n != 10 {
			t.Fatalf("round robin hits = %v, want 10 each", hits)
		}
	}

	if _, err := c.EtcdClient().Delete(context.Background(), prefix+"1"); err != nil {
		t.Fatal(err)
	}
	itest.Eventually(t, 5*time.Second, "endpointer drops the deleted instance", func() bool {
		eps, _ := ep.Endpoints()
		return len(eps) == 2
	})
}

func TestStuckSubscriberBlocksNeitherWatchNorOthers(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints())
	admin := srv.Client(t)
	const prefix = "/services/stuck/"
	in := newInstancer(t, c, prefix)

	stuck := make(chan sd.Event) // read once for Register, then never until the end
	go func() { <-stuck }()
	in.Register(stuck)
	defer in.Deregister(stuck)
	live := itest.Subscribe(t, in)

	ctx := context.Background()
	for i := range 200 {
		if _, err := admin.Put(ctx, fmt.Sprintf("%s%03d", prefix, i), fmt.Sprintf("10.0.0.%d:80", i)); err != nil {
			t.Fatal(err)
		}
	}
	want := itest.Values(t, admin, prefix)
	live.WaitInstances(t, 5*time.Second, want...)

	// Reading again gives the latest state rather than the backlog: at most
	// one older state its delivery goroutine had committed to, then the
	// latest at once (see etcdv3.Instancer.Register).
	for reads := 1; ; reads++ {
		select {
		case ev := <-stuck:
			if slices.Equal(ev.Instances, want) {
				return
			}
			if reads == 2 {
				t.Fatalf("second read after the stall has %d instances, want the latest %d", len(ev.Instances), len(want))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("stuck subscriber got nothing on read %d", reads)
		}
	}
}

func TestInstancerSkipsMalformedValuesAndKeepsTheRest(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints())
	admin := srv.Client(t)
	const prefix = "/services/malformed/"
	ctx := context.Background()
	good := `{"id":"a","version":"v1","address":"127.0.0.1:1"}`
	for k, v := range map[string]string{"a": good, "b": `{"address":`, "c": "127.0.0.1:3"} {
		if _, err := admin.Put(ctx, prefix+k, v); err != nil {
			t.Fatal(err)
		}
	}
	in := newInstancer(t, c, prefix)
	sub := itest.Subscribe(t, in)
	sub.WaitInstances(t, 5*time.Second, good, "127.0.0.1:3")

	// Fixing the value brings the instance in; breaking it takes it out.
	if _, err := admin.Put(ctx, prefix+"b", `{"address":"127.0.0.1:2"}`); err != nil {
		t.Fatal(err)
	}
	sub.WaitInstances(t, 5*time.Second, good, `{"address":"127.0.0.1:2"}`, "127.0.0.1:3")
	if _, err := admin.Put(ctx, prefix+"c", `{"weight":`); err != nil {
		t.Fatal(err)
	}
	sub.WaitInstances(t, 5*time.Second, good, `{"address":"127.0.0.1:2"}`)
}

func TestInstancerSurvivesEtcdStoppedLongerThanTTL(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints(), func(o *etcdv3.ClientOptions) { o.DialTimeout = 500 * time.Millisecond })
	const prefix = "/services/restart/"
	ttl := etcdv3.NewTTLOption(etcdv3.MinHeartbeat, time.Second)
	reg := etcdv3.NewRegistrar(c, etcdv3.Service{Key: prefix + "a", Value: "127.0.0.1:1", TTL: ttl}, itest.Logger(t))
	reg.Register()
	defer reg.Deregister()
	in := newInstancer(t, c, prefix)
	sub := itest.Subscribe(t, in)
	sub.WaitInstances(t, 5*time.Second, "127.0.0.1:1")

	srv.Stop()
	// Subscribers hear once that etcd is gone, and keep their instances.
	sub.WaitFor(t, 10*time.Second, "an error event keeping the last instances", func(ev sd.Event) bool {
		return ev.Err != nil && slices.Equal(ev.Instances, []string{"127.0.0.1:1"})
	})
	time.Sleep(1500 * time.Millisecond) // etcd stays down longer than the 1 s TTL
	srv.Start()

	admin := srv.Client(t)
	itest.Eventually(t, 10*time.Second, "registration back after restart", func() bool { return itest.KeyExists(t, admin, prefix+"a") })
	if _, err := admin.Put(context.Background(), prefix+"b", "127.0.0.1:2"); err != nil {
		t.Fatal(err)
	}
	sub.WaitInstances(t, 10*time.Second, "127.0.0.1:1", "127.0.0.1:2")
	itest.Eventually(t, 5*time.Second, "registrar healthy", func() bool {
		st := reg.Status()
		return st.State == etcdv3.StateRegistered && st.Err == nil
	})
}

// TestStopOfOneInstancerKeepsAChannelRegisteredWithAnotherOfTheSamePrefix:
// go-kit's sd.Instancer contract is per Instancer: Stop ends that
// Instancer's subscriptions, and a channel registered with another
// Instancer keeps receiving its events, though the Instancers of one client
// and prefix share one Feed.
func TestStopOfOneInstancerKeepsAChannelRegisteredWithAnotherOfTheSamePrefix(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := metricsClient(t, srv.Endpoints(), prometheus.NewRegistry())
	const prefix = "/services/two-registrations/"
	a, err := etcdv3.NewInstancer(c, prefix, itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	b := newInstancer(t, c, prefix)
	ch := make(chan sd.Event, 16)
	a.Register(ch)
	b.Register(ch)
	<-ch // the current state, sent by each Register as go-kit does
	<-ch
	a.Stop()
	if _, err := srv.Client(t).Put(context.Background(), prefix+"x", "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-ch:
		if !slices.Equal(ev.Instances, []string{"127.0.0.1:1"}) {
			t.Errorf("b's subscriber got %+v after a was stopped and the prefix changed, want [127.0.0.1:1]", ev)
		}
	case <-time.After(3 * time.Second):
		t.Error("the channel registered with b got nothing after a was stopped and the prefix changed")
	}
	b.Deregister(ch)
}

// TestDeregisterOfAChannelRegisteredWithAnotherInstancerOfTheSamePrefixLeavesIt:
// Deregister of a channel not registered with this Instancer does nothing,
// as in go-kit, though the Instancers of one client and prefix share one
// Feed.
func TestDeregisterOfAChannelRegisteredWithAnotherInstancerOfTheSamePrefixLeavesIt(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := metricsClient(t, srv.Endpoints(), prometheus.NewRegistry())
	const prefix = "/services/foreign-deregister/"
	a, b := newInstancer(t, c, prefix), newInstancer(t, c, prefix)
	ch := make(chan sd.Event, 16)
	b.Register(ch)
	<-ch
	a.Deregister(ch)
	if _, err := srv.Client(t).Put(context.Background(), prefix+"x", "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-ch:
		if !slices.Equal(ev.Instances, []string{"127.0.0.1:1"}) {
			t.Errorf("b's subscriber got %+v after a deregistered it and the prefix changed, want [127.0.0.1:1]", ev)
		}
	case <-time.After(3 * time.Second):
		t.Error("the channel registered with b got nothing after a deregistered it and the prefix changed")
	}
	b.Deregister(ch)
}
