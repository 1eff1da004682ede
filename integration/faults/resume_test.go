package faults

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// TestInstancerResumesAfterItsMemberLostTheLeader watches through a
// follower of a 3-member cluster whose two peers stop: the follower loses
// its leader and etcd ends the watch (it requires a leader). Once the
// peers are back and elect a leader, the Instancer resumes the watch from
// its revision, reads nothing again, and ends equal to etcd.
func TestInstancerResumesAfterItsMemberLostTheLeader(t *testing.T) {
	cl := etcdtest.NewCluster(t, 3)
	follower := (cl.Leader() + 1) % 3
	endpoint := cl.Member(follower).Endpoints()[0]
	c := itestclient.New(t, []string{endpoint}, func(o *etcdv3.ClientOptions) {
		o.DialTimeout = 300 * time.Millisecond
		o.RequestTimeout = time.Second
	})
	const prefix = "/services/resume-leader/"
	admin := cl.Client(t)
	ctx := context.Background()
	if _, err := admin.Put(ctx, prefix+"a", "127.0.0.1:a"); err != nil {
		t.Fatal(err)
	}
	in, err := etcdv3.NewInstancer(c, prefix, itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Stop)
	sub := itest.Subscribe(t, in)
	sub.WaitInstances(t, 5*time.Second, "127.0.0.1:a")
	_, from := sub.Since(0)
	reads := itest.EtcdMetric(t, endpoint, "grpc_server_handled_total", `grpc_method="Range"`) // all members' reads: they share the test's registry

	peers := []int{(follower + 1) % 3, (follower + 2) % 3}
	for _, i := range peers {
		cl.StopMember(i)
	}
	sub.WaitFor(t, 10*time.Second, "the watch ended for want of a leader", func(ev sd.Event) bool { return ev.Err != nil })
	for _, i := range peers {
		cl.StartMember(i)
	}
	cl.Leader()
	if _, err := admin.Put(ctx, prefix+"b", "127.0.0.1:b"); err != nil {
		t.Fatal(err)
	}
	sub.WaitInstances(t, 15*time.Second, "127.0.0.1:a", "127.0.0.1:b")

	evs, _ := sub.Since(from)
	if n := itest.ErrorEvents(evs); n != 1 {
		t.Errorf("%d error events while the member had no leader, want 1: %+v", n, evs)
	}
	if n := itest.EtcdMetric(t, endpoint, "grpc_server_handled_total", `grpc_method="Range"`) - reads; n != 0 {
		t.Errorf("%v range reads after the leader came back, want 0: the watches resume from their revisions", n)
	}
}

// TestInstancerReadsTheEtcdThatComesBackAtALowerRevision: the endpoint is
// cut off for longer than the dial timeout and comes back served by an etcd
// whose store is at a lower revision than the Instancer's (restored from a
// backup, or its data dir lost; here another cluster too). A watch resumed
// there would wait for the Instancer's revision and miss everything
// before: the Instancer reads a snapshot instead ("history lost") and ends
// with the instances that etcd holds, not the old etcd's.
func TestInstancerReadsTheEtcdThatComesBackAtALowerRevision(t *testing.T) {
	a, b := twoClusters(t)
	sw := newProbeSwitch(t, a.Endpoints()[0])
	c := itestclient.New(t, []string{sw.addr()}, func(o *etcdv3.ClientOptions) {
		o.DialTimeout = dialTimeout
		o.RequestTimeout = requestTimeout
	})
	const prefix = "/services/resume-lower/"
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

// TestInstancerOutageErrorClearsOnlyOnceTheResumedWatchCaughtUp: after an
// outage during which the prefix changed many times, the resumed watch
// catches up in responses of at most 1,000 revisions, one about every
// 100 ms. The error clears only once it has caught up, with the true
// state: the request-timeout fallback meant for etcd's grpc-proxy waits
// for a request timeout of silence, and each catch-up response starts that
// wait again (here the request timeout, 300 ms, is shorter than the
// catch-up).
func TestInstancerOutageErrorClearsOnlyOnceTheResumedWatchCaughtUp(t *testing.T) {
	srv := etcdtest.NewServer(t)
	sw := newProbeSwitch(t, srv.Endpoints()[0])
	c := itestclient.New(t, []string{sw.addr()}, func(o *etcdv3.ClientOptions) {
		o.DialTimeout = dialTimeout
		o.RequestTimeout = 300 * time.Millisecond
	})
	const prefix = "/services/resume-catchup/"
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

// TestInstancerReadsAnotherClusterAfterAReconnectTooShortToReport: the
// endpoint is served by another etcd cluster after a reconnect well within
// the dial timeout, so no outage is reported and clientv3 resumes the watch
// by itself at the Instancer's next revision. The first response from the
// other cluster bears its cluster ID: the Instancer reads a snapshot of it
// rather than apply its events onto the old etcd's instances.
func TestInstancerReadsAnotherClusterAfterAReconnectTooShortToReport(t *testing.T) {
	a, b := twoClusters(t)
	sw := newProbeSwitch(t, a.Endpoints()[0])
	c := itestclient.New(t, []string{sw.addr()}, func(o *etcdv3.ClientOptions) {
		o.DialTimeout = 5 * time.Second
		o.RequestTimeout = requestTimeout
	})
	const prefix = "/services/resume-other/"
	ctx := context.Background()
	adminA, adminB := a.Client(t), b.Client(t)
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
	// The other cluster's store passes the Instancer's revision, so the
	// watch clientv3 resumes there gets its events.
	for i := range 20 {
		if _, err := adminB.Put(ctx, "/elsewhere", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := adminB.Put(ctx, prefix+"new", "127.0.0.1:2")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Instancer at revision %d; the other cluster put %snew at revision %d", in.Revision(), prefix, resp.Header.Revision)

	sw.set(b.Endpoints()[0])
	sub.WaitInstances(t, 10*time.Second, "127.0.0.1:2")
	evs, _ := sub.Since(0)
	for _, ev := range evs {
		if ev.Err != nil {
			t.Errorf("an outage was reported (%v): the reconnect was to be shorter than the dial timeout", ev.Err)
		}
	}
}

// twoClusters starts two embedded etcds, two clusters of their own; the
// test skips against an external etcd, which would serve both.
func twoClusters(t *testing.T) (*etcdtest.Server, *etcdtest.Server) {
	t.Helper()
	a := etcdtest.NewServer(t)
	if a.External() {
		t.Skip("needs two clusters: the embedded servers")
	}
	return a, etcdtest.NewServer(t)
}

// A watch on another cluster than the one the Feed was read from ends at
// its first answer, whatever the revisions: the other cluster's store is
// ahead of the Feed, so only its cluster ID gives it away.
func TestWatchOnAnotherClusterFindsTheHistoryLost(t *testing.T) {
	a, b := twoClusters(t)
	sw := newProbeSwitch(t, a.Endpoints()[0])
	c := itestclient.New(t, []string{sw.addr()}, func(o *etcdv3.ClientOptions) {
		o.DialTimeout = 5 * time.Second
		o.RequestTimeout = time.Second
	})
	src := pipeline.SourceFor(c, "/other/")
	rev, _, err := src.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	adminB := b.Client(t)
	for i := range int(rev) + 20 {
		if _, err := adminB.Put(context.Background(), "/elsewhere", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	sw.set(b.Endpoints()[0])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []pipeline.WatchResponse
	err = src.Watch(ctx, rev+1, func(r pipeline.WatchResponse) { got = append(got, r) })
	if !errors.Is(err, pipeline.ErrHistoryLost) {
		t.Fatalf("err = %v after %+v, want ErrHistoryLost", err, got)
	}
}
