package core

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

// rangeReads counts the range reads etcd's gRPC server has answered.
func rangeReads(t *testing.T, endpoint string) float64 {
	return itest.EtcdMetric(t, endpoint, "grpc_server_handled_total", `grpc_method="Range"`)
}

// TestInstancerResumesAfterEtcdRestartWithoutReadingAgain restarts etcd,
// with its history, under an Instancer: the Instancer reports the outage
// once, resumes its watches from their revisions, reads nothing again, and
// ends equal to etcd; and etcd counts as many watchers as before, none
// left behind by the watches of before the restart.
func TestInstancerResumesAfterEtcdRestartWithoutReadingAgain(t *testing.T) {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("restarts etcd and reads its metrics: needs the embedded server")
	}
	endpoint := srv.Endpoints()[0]
	c := itestclient.New(t, srv.Endpoints(), func(o *etcdv3.ClientOptions) {
		o.DialTimeout = 300 * time.Millisecond
		o.RequestTimeout = time.Second
	})
	const prefix = "/services/resume-restart/"
	admin := srv.Client(t)
	ctx := context.Background()
	for _, k := range []string{"a", "b"} {
		if _, err := admin.Put(ctx, prefix+k, "127.0.0.1:"+k); err != nil {
			t.Fatal(err)
		}
	}
	in := newInstancer(t, c, prefix)
	sub := itest.Subscribe(t, in)
	sub.WaitInstances(t, 5*time.Second, "127.0.0.1:a", "127.0.0.1:b")
	_, from := sub.Since(0)
	reads := rangeReads(t, endpoint)
	watchers := itest.EtcdMetric(t, endpoint, "etcd_debugging_mvcc_watcher_total")

	srv.Stop()
	sub.WaitFor(t, 10*time.Second, "the outage", func(ev sd.Event) bool { return ev.Err != nil })
	srv.Start()
	admin = srv.Client(t)
	if _, err := admin.Put(ctx, prefix+"c", "127.0.0.1:c"); err != nil {
		t.Fatal(err)
	}
	sub.WaitInstances(t, 15*time.Second, "127.0.0.1:a", "127.0.0.1:b", "127.0.0.1:c")

	evs, _ := sub.Since(from)
	if n := itest.ErrorEvents(evs); n != 1 {
		t.Errorf("%d error events over one outage, want 1: %+v", n, evs)
	}
	if n := rangeReads(t, endpoint) - reads; n != 0 {
		t.Errorf("%v range reads after the restart, want 0: the watches resume from their revisions", n)
	}
	// The Instancer's two watches (instances, properties) are back, and
	// no more: a watcher left behind stays until an event or etcd's
	// 10-minute progress notification for it reaches the client.
	itest.Eventually(t, 5*time.Second, fmt.Sprintf("etcd's watchers back at %v (now %v)", watchers, itest.EtcdMetric(t, endpoint, "etcd_debugging_mvcc_watcher_total")), func() bool {
		return itest.EtcdMetric(t, endpoint, "etcd_debugging_mvcc_watcher_total") == watchers
	})
}

// TestInstancerLeavesNoWatcherBehindAfterAPartition cuts an Instancer off
// from etcd for longer than the dial timeout while etcd keeps running and
// the prefix stays quiet. A watch cancelled while clientv3 reconnects its
// stream is created again in etcd when the stream is back, and forgotten
// by the client: etcd then keeps a watcher nobody reads until an event for
// it (or its 10-minute progress notification) reaches the client, which
// only then cancels it. Nothing is written under the prefix until the
// count is checked, as under a quiet prefix.
func TestInstancerLeavesNoWatcherBehindAfterAPartition(t *testing.T) {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("reads etcd's metrics: needs the embedded server")
	}
	endpoint := srv.Endpoints()[0]
	proxy := etcdtest.NewProxy(t, endpoint)
	c := itestclient.New(t, []string{proxy.Endpoint()}, func(o *etcdv3.ClientOptions) {
		o.DialTimeout = 300 * time.Millisecond
		o.RequestTimeout = time.Second
	})
	const prefix = "/services/resume-partition/"
	admin := srv.Client(t)
	ctx := context.Background()
	if _, err := admin.Put(ctx, prefix+"a", "127.0.0.1:a"); err != nil {
		t.Fatal(err)
	}
	in := newInstancer(t, c, prefix)
	sub := itest.Subscribe(t, in)
	sub.WaitInstances(t, 5*time.Second, "127.0.0.1:a")
	_, from := sub.Since(0)
	reads := rangeReads(t, endpoint)
	watchers := itest.EtcdMetric(t, endpoint, "etcd_debugging_mvcc_watcher_total")

	proxy.Blackhole()
	proxy.DropConnections()
	sub.WaitFor(t, 10*time.Second, "the outage", func(ev sd.Event) bool { return ev.Err != nil })
	proxy.Unblackhole()
	sub.WaitInstances(t, 15*time.Second, "127.0.0.1:a")

	evs, _ := sub.Since(from)
	if n := itest.ErrorEvents(evs); n != 1 {
		t.Errorf("%d error events over one partition, want 1: %+v", n, evs)
	}
	if n := rangeReads(t, endpoint) - reads; n != 0 {
		t.Errorf("%v range reads after the partition, want 0: the watches resume from their revisions", n)
	}
	itest.Eventually(t, 5*time.Second, fmt.Sprintf("etcd's watchers back at %v", watchers), func() bool {
		return itest.EtcdMetric(t, endpoint, "etcd_debugging_mvcc_watcher_total") == watchers
	})
	// And the resumed watch follows changes.
	if _, err := admin.Put(ctx, prefix+"b", "127.0.0.1:b"); err != nil {
		t.Fatal(err)
	}
	sub.WaitInstances(t, 5*time.Second, "127.0.0.1:a", "127.0.0.1:b")
}

// TestInstancerReadsOneSnapshotWhenHistoryIsCompactedDuringAnOutage cuts
// an Instancer off while etcd changes the prefix and compacts past its
// revision: the resumed watch finds the revision compacted, and the
// Instancer reads one snapshot and ends equal to etcd.
func TestInstancerReadsOneSnapshotWhenHistoryIsCompactedDuringAnOutage(t *testing.T) {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("reads etcd's metrics: needs the embedded server")
	}
	endpoint := srv.Endpoints()[0]
	proxy := etcdtest.NewProxy(t, endpoint)
	c := itestclient.New(t, []string{proxy.Endpoint()}, func(o *etcdv3.ClientOptions) {
		o.DialTimeout = 300 * time.Millisecond
		o.RequestTimeout = time.Second
		o.PropertiesRoot = "-" // one mirror, so one snapshot to count
	})
	const prefix = "/services/resume-compacted/"
	admin := srv.Client(t)
	ctx := context.Background()
	for _, k := range []string{"a", "b"} {
		if _, err := admin.Put(ctx, prefix+k, "127.0.0.1:"+k); err != nil {
			t.Fatal(err)
		}
	}
	in := newInstancer(t, c, prefix)
	sub := itest.Subscribe(t, in)
	sub.WaitInstances(t, 5*time.Second, "127.0.0.1:a", "127.0.0.1:b")
	_, from := sub.Since(0)
	reads := rangeReads(t, endpoint)

	proxy.Blackhole()
	proxy.DropConnections()
	sub.WaitFor(t, 10*time.Second, "the outage", func(ev sd.Event) bool { return ev.Err != nil })
	if _, err := admin.Delete(ctx, prefix+"a"); err != nil {
		t.Fatal(err)
	}
	resp, err := admin.Put(ctx, prefix+"c", "127.0.0.1:c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	proxy.Unblackhole()
	sub.WaitInstances(t, 15*time.Second, "127.0.0.1:b", "127.0.0.1:c")

	evs, _ := sub.Since(from)
	if n := itest.ErrorEvents(evs); n != 1 {
		t.Errorf("%d error events over one outage, want 1: %+v", n, evs)
	}
	if n := rangeReads(t, endpoint) - reads; n != 1 {
		t.Errorf("%v range reads after the outage, want 1: the snapshot for the compacted revision", n)
	}
	if _, err := admin.Put(ctx, prefix+"d", "127.0.0.1:d"); err != nil {
		t.Fatal(err)
	}
	sub.WaitInstances(t, 5*time.Second, "127.0.0.1:b", "127.0.0.1:c", "127.0.0.1:d")
}
