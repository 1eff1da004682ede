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
