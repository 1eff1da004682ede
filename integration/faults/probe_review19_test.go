package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// TestProbeInstancerAfterOutageToAnEtcdAtALowerRevision: the endpoint is
// cut off for longer than the dial timeout and comes back served by an etcd
// whose store is at a lower revision than the Instancer's (restored from a
// backup, or its data dir lost). The design promises "on recovery they get
// the true current state": the Instancer must end with the instances that
// etcd holds, not keep the old etcd's.
func TestProbeInstancerAfterOutageToAnEtcdAtALowerRevision(t *testing.T) {
	a, b := etcdtest.NewServer(t), etcdtest.NewServer(t)
	sw := newProbeSwitch(t, a.Endpoints()[0])
	c := itestclient.New(t, []string{sw.addr()}, func(o *etcdv3.ClientOptions) {
		o.DialTimeout = dialTimeout
		o.RequestTimeout = requestTimeout
	})
	const prefix = "/services/probe-lower/"
	ctx := context.Background()
	adminA, adminB := a.Client(t), b.Client(t)
	for i := range 50 {
		if _, err := adminA.Put(ctx, "/elsewhere", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := adminA.Put(ctx, prefix+"old", "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	in, err := etcdv3.NewInstancer(c, prefix, itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Stop)
	sub := itest.Subscribe(t, in)
	sub.WaitInstances(t, 5*time.Second, "127.0.0.1:1")

	sw.set("")
	sub.WaitFor(t, 10*time.Second, "the outage reported", func(ev sd.Event) bool { return ev.Err != nil })
	resp, err := adminB.Put(ctx, prefix+"new", "127.0.0.1:2")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Instancer at revision %d; the new etcd put %snew at revision %d", in.Revision(), prefix, resp.Header.Revision)
	sw.set(b.Endpoints()[0])

	defer func() {
		if t.Failed() {
			evs, _ := sub.Since(0)
			t.Logf("events: %+v", evs)
		}
	}()
	sub.WaitInstances(t, 10*time.Second, "127.0.0.1:2")
}

// TestProbeOutageErrorClearsOnlyOnceTheResumedWatchCaughtUp: after an
// outage during which the prefix changed many times, the resumed watch
// catches up in responses of at most 1,000 revisions, one every 100 ms.
// The design says the error clears only "once the resumed watch is proven
// caught up", and that "on recovery they get the true current state". The
// request-timeout fallback meant for etcd's grpc-proxy also fires against
// etcd itself, while the watch is still catching up: the error clears with
// a state etcd left behind long before.
func TestProbeOutageErrorClearsOnlyOnceTheResumedWatchCaughtUp(t *testing.T) {
	srv := etcdtest.NewServer(t)
	sw := newProbeSwitch(t, srv.Endpoints()[0])
	c := itestclient.New(t, []string{sw.addr()}, func(o *etcdv3.ClientOptions) {
		o.DialTimeout = dialTimeout
		o.RequestTimeout = 300 * time.Millisecond
	})
	const prefix = "/services/probe-catchup/"
	admin := srv.Client(t)
	ctx := context.Background()
	in, err := etcdv3.NewInstancer(c, prefix, itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Stop)
	sub := itest.Subscribe(t, in)
	sub.WaitInstances(t, 5*time.Second)
	sw.set("")
	sub.WaitFor(t, 10*time.Second, "the outage reported", func(ev sd.Event) bool { return ev.Err != nil })
	_, from := sub.Since(0)

	const keys, writers = 10000, 16
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := w; i < keys; i += writers {
				if _, err := admin.Put(ctx, fmt.Sprintf("%s%05d", prefix, i), fmt.Sprintf("127.0.0.1:%d", 10000+i)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	sw.set(srv.Endpoints()[0])

	ev := sub.WaitFor(t, 30*time.Second, "the error cleared", func(ev sd.Event) bool { return ev.Err == nil && len(ev.Instances) > 0 })
	evs, _ := sub.Since(from)
	for _, e := range evs {
		if e.Err == nil {
			ev = e
			break
		}
	}
	if len(ev.Instances) != keys {
		t.Errorf("the first event without error after the outage holds %d instances; etcd held %d since before the watch resumed", len(ev.Instances), keys)
	}
	sub.WaitFor(t, 30*time.Second, "all instances", func(ev sd.Event) bool { return ev.Err == nil && len(ev.Instances) == keys })
}
