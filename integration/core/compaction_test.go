package core

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

func TestInstancerResyncsAfterCompactionWhileDisconnected(t *testing.T) {
	srv := etcdtest.NewServer(t)
	proxy := etcdtest.NewProxy(t, srv.Endpoints()[0])
	admin := srv.Client(t)
	c := itestclient.New(t, []string{proxy.Endpoint()}, func(o *etcdv3.ClientOptions) {
		o.DialTimeout = 300 * time.Millisecond
		o.RequestTimeout = 500 * time.Millisecond
	})
	const prefix = "/services/compaction/"
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		if _, err := admin.Put(ctx, prefix+k, "10.0.0."+k); err != nil {
			t.Fatal(err)
		}
	}
	in := newInstancer(t, c, prefix)
	sub := itest.Subscribe(t, in)
	sub.WaitInstances(t, 5*time.Second, "10.0.0.a", "10.0.0.b", "10.0.0.c")

	// Cut the Instancer off: traffic vanishes and reconnects hang.
	proxy.Blackhole()
	proxy.DropConnections()
	sub.WaitFor(t, 10*time.Second, "an error event while cut off", func(ev sd.Event) bool { return ev.Err != nil })

	// Meanwhile etcd moves on, and compacts the history the watch would need.
	if _, err := admin.Delete(ctx, prefix+"a"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Put(ctx, prefix+"b", "10.0.0.b2"); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if _, err := admin.Put(ctx, fmt.Sprintf("%sn%02d", prefix, i), fmt.Sprintf("10.1.0.%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := admin.Delete(ctx, prefix+"n00")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatalf("compact: %v", err)
	}
	if in.Revision() >= resp.Header.Revision {
		t.Fatalf("instancer at revision %d saw changes while cut off", in.Revision())
	}

	proxy.Unblackhole()
	proxy.DropConnections()
	want := itest.Values(t, admin, prefix)
	ev := sub.WaitFor(t, 15*time.Second, "the true state after healing", func(ev sd.Event) bool {
		return ev.Err == nil && slices.Equal(ev.Instances, want)
	})
	if len(ev.Instances) != len(slices.Compact(slices.Clone(ev.Instances))) {
		t.Fatalf("duplicated instances: %v", ev.Instances)
	}
	// And it keeps following changes after the resync.
	if _, err := admin.Put(ctx, prefix+"z", "10.9.9.9"); err != nil {
		t.Fatal(err)
	}
	sub.WaitInstances(t, 5*time.Second, append(want, "10.9.9.9")...)
}
