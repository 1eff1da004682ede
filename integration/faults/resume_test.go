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
