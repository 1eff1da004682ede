package faults

import (
	"context"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// TestProbeNewInstancerContextDuringOutageOnASharedPrefix: while etcd is
// unreachable, NewInstancerContext of a prefix nobody follows fails within
// the dial timeout (its read is bounded by it: "While etcd is unreachable
// no call blocks past RequestTimeout", design.md). On a prefix that
// another Instancer of the client follows, it should fail as fast: the
// doc says it "waits for its next read, and fails if that fails too". But
// a Mirror that resumes instead of reading makes no next read during an
// outage, so it waits for as long as ctx lasts.
func TestProbeNewInstancerContextDuringOutageOnASharedPrefix(t *testing.T) {
	srv := etcdtest.NewServer(t)
	sw := newProbeSwitch(t, srv.Endpoints()[0])
	c := itestclient.New(t, []string{sw.addr()}, func(o *etcdv3.ClientOptions) {
		o.DialTimeout = dialTimeout
		o.RequestTimeout = requestTimeout
	})
	const prefix = "/services/probe-ctx/"
	first, err := etcdv3.NewInstancer(c, prefix, itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(first.Stop)
	sub := itest.Subscribe(t, first)
	sw.set("")
	sub.WaitFor(t, 10*time.Second, "the outage reported", func(ev sd.Event) bool { return ev.Err != nil })

	// The same call on a prefix nobody follows, for comparison.
	start := time.Now()
	if in, err := etcdv3.NewInstancerContext(context.Background(), c, "/services/probe-ctx-alone/", itest.Logger(t)); err == nil {
		in.Stop()
		t.Fatal("NewInstancerContext of an unshared prefix succeeded during the outage")
	}
	t.Logf("unshared prefix: failed after %v", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	start = time.Now()
	in, err := etcdv3.NewInstancerContext(ctx, c, prefix, itest.Logger(t))
	took := time.Since(start)
	if err == nil {
		in.Stop()
	}
	t.Logf("shared prefix: err=%v after %v", err, took.Round(time.Millisecond))
	if bound := dialTimeout + requestTimeout + time.Second; took > bound {
		t.Errorf("NewInstancerContext on a shared prefix took %v during the outage, want at most %v (the unshared one fails within the dial timeout)", took.Round(time.Millisecond), bound)
	}
}
