package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/etcdtest"
)

func TestThousandRegistrarsOnOneClientComeBack(t *testing.T) {
	const n = 1000
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("restarts need an embedded etcd")
	}
	logs := newLogTail(t)
	svc := newClient(t, logs, srv.Endpoints())
	obs := newClient(t, logs, srv.Endpoints())
	f := newFleet(t, "/faults/thousand/", srv.Client(t), logs)
	w := f.watch("watching client", obs)
	for i := range n {
		f.register(svc, fmt.Sprintf("%04d", i))
	}
	f.mustCheck(fmt.Sprintf("%d registered", n))

	// Through a restart that outlives the TTL: etcd keeps the lease and
	// extends it when it comes back.
	srv.Stop()
	w.rec.WaitFor(t, 5*time.Second, "an error event with all instances", func(ev sd.Event) bool {
		return ev.Err != nil && len(ev.Instances) == n
	})
	time.Sleep(ttl)
	srv.Start()
	f.mustCheck("after a restart longer than the TTL")

	// Through the loss of the shared lease: all 1,000 keys go at once and
	// come back on a new lease, 128 per transaction.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lease := f.live[f.keys()[0]].reg.Status().LeaseID
	if _, err := f.truth.Revoke(ctx, clientv3.LeaseID(lease)); err != nil {
		t.Fatalf("revoke the shared lease %x: %v", lease, err)
	}
	f.mustCheck("after the shared lease was revoked")
	if logs.logged("registered again on a new lease") == 0 {
		t.Fatal("no re-registration was logged")
	}
}
