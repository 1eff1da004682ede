package core

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// shortTTL keeps lease tests fast: a key lives 2 s without heartbeats.
func shortTTL() *etcdv3.TTLOption { return etcdv3.NewTTLOption(etcdv3.MinHeartbeat, 2*time.Second) }

func TestRegisterDiscoverDeregister(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints())
	const prefix = "/services/register-discover/"

	in := newInstancer(t, c, prefix)
	sub := itest.Subscribe(t, in)
	sub.WaitInstances(t, 5*time.Second)

	reg := etcdv3.NewRegistrar(c, etcdv3.Service{Key: prefix + "a", Value: "127.0.0.1:8001", TTL: shortTTL()}, itest.Logger(t))
	reg.Register()
	reg.Register() // a no-op
	sub.WaitInstances(t, 5*time.Second, "127.0.0.1:8001")
	if st := reg.Status(); st.State != etcdv3.StateRegistered || st.LeaseID == 0 || st.Err != nil {
		t.Fatalf("status after register = %+v", st)
	}

	reg.Deregister()
	sub.WaitInstances(t, 5*time.Second)
	if itest.KeyExists(t, c.EtcdClient(), prefix+"a") {
		t.Fatal("key still in etcd after Deregister")
	}
	reg.Deregister() // idempotent
	if st := reg.Status(); st.State != etcdv3.StateDeregistered {
		t.Fatalf("status after deregister = %+v", st)
	}
}

func TestServicesOnOneClientStayAliveOnTheirOwn(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints())
	const prefix = "/services/one-client/"
	var regs []*etcdv3.Registrar
	for i := range 3 {
		r := etcdv3.NewRegistrar(c, etcdv3.Service{Key: fmt.Sprintf("%s%d", prefix, i), Value: fmt.Sprintf("127.0.0.1:%d", 9000+i), TTL: shortTTL()}, itest.Logger(t))
		r.Register()
		regs = append(regs, r)
	}
	// Services with the same TTL share one lease: one keepalive for all.
	if regs[0].Status().LeaseID != regs[2].Status().LeaseID {
		t.Fatalf("services with one TTL use leases %x and %x, want one shared lease", regs[0].Status().LeaseID, regs[2].Status().LeaseID)
	}
	regs[1].Deregister()

	// Past two TTLs, the other two are still there and the deregistered one is not.
	deadline := time.Now().Add(2 * 2 * time.Second)
	for time.Now().Before(deadline) {
		if got := itest.Values(t, c.EtcdClient(), prefix); fmt.Sprint(got) != "[127.0.0.1:9000 127.0.0.1:9002]" {
			t.Fatalf("values = %v, want the two services that were not deregistered", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, r := range []*etcdv3.Registrar{regs[0], regs[2]} {
		r.Deregister()
	}
	itest.Eventually(t, 5*time.Second, "every key gone", func() bool { return len(itest.Values(t, c.EtcdClient(), prefix)) == 0 })
}

func TestLeaseRevokedByAnotherClientIsRegisteredAgainWithinTTL(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints())
	admin := srv.Client(t)
	const key = "/services/revoked/a"
	reg := etcdv3.NewRegistrar(c, etcdv3.Service{Key: key, Value: "127.0.0.1:1", TTL: shortTTL()}, itest.Logger(t))
	reg.Register()
	defer reg.Deregister()
	old := reg.Status().LeaseID

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := admin.Revoke(ctx, clientv3.LeaseID(old)); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if itest.KeyExists(t, admin, key) {
		t.Fatal("revoking the lease did not delete the key")
	}
	itest.Eventually(t, 2*time.Second, "key back within its TTL", func() bool { return itest.KeyExists(t, admin, key) })
	itest.Eventually(t, 2*time.Second, "status healthy on a new lease", func() bool {
		st := reg.Status()
		return st.State == etcdv3.StateRegistered && st.Err == nil && st.LeaseID != old && st.LeaseID != 0
	})
}

func TestRegisterKeepsTryingUntilEtcdIsBack(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints())
	srv.Stop()
	reg := etcdv3.NewRegistrar(c, etcdv3.Service{Key: "/services/late/a", Value: "127.0.0.1:1", TTL: shortTTL()}, itest.Logger(t))
	reg.Register() // fails now, retries in the background
	if st := reg.Status(); st.State != etcdv3.StateRegistering || st.Err == nil {
		t.Fatalf("status with etcd down = %+v, want registering with an error", st)
	}
	srv.Start()
	admin := srv.Client(t)
	itest.Eventually(t, 10*time.Second, "registered once etcd is back", func() bool { return itest.KeyExists(t, admin, "/services/late/a") })
	itest.Eventually(t, 5*time.Second, "status registered", func() bool { return reg.Status().State == etcdv3.StateRegistered })
	reg.Deregister()
	if itest.KeyExists(t, admin, "/services/late/a") {
		t.Fatal("key still there after Deregister")
	}
}

func TestRegisterContextGivesUpWithTheError(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints())
	srv.Stop()
	reg := etcdv3.NewRegistrar(c, etcdv3.Service{Key: "/services/give-up/a", Value: "x:1", TTL: shortTTL()}, itest.Logger(t))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := reg.RegisterContext(ctx)
	if err == nil {
		t.Fatal("RegisterContext succeeded with etcd stopped")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("RegisterContext took %v after its context ended", took)
	}
	if st := reg.Status(); st.State != etcdv3.StateIdle {
		t.Fatalf("status after giving up = %+v, want idle", st)
	}
}

func TestPauseAndResume(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints())
	const prefix = "/services/pause/"
	in := newInstancer(t, c, prefix)
	sub := itest.Subscribe(t, in)
	reg := etcdv3.NewRegistrar(c, etcdv3.Service{Key: prefix + "a", Value: "127.0.0.1:7", TTL: shortTTL()}, itest.Logger(t))
	ctx := context.Background()
	if err := reg.RegisterContext(ctx); err != nil {
		t.Fatal(err)
	}
	sub.WaitInstances(t, 5*time.Second, "127.0.0.1:7")
	for range 2 { // twice: repeated calls are no-ops
		if err := reg.Pause(ctx); err != nil {
			t.Fatalf("pause: %v", err)
		}
	}
	sub.WaitInstances(t, 5*time.Second)
	if reg.State() != etcdv3.StatePaused {
		t.Fatalf("state = %v, want paused", reg.State())
	}
	for range 2 {
		if err := reg.Resume(ctx); err != nil {
			t.Fatalf("resume: %v", err)
		}
	}
	sub.WaitInstances(t, 5*time.Second, "127.0.0.1:7")
	reg.Deregister()
	sub.WaitInstances(t, 5*time.Second)
}

// In a rolling restart the new process registers the key the old one used
// (here with the same value); the old process's Deregister, even repeated,
// must not delete the new registration. A Registrar that never registered
// deletes the key, as go-kit's does.
func TestDeregisterLeavesAKeyRegisteredSinceByAnotherProcess(t *testing.T) {
	srv := etcdtest.NewServer(t)
	admin := srv.Client(t)
	const key = "/services/rolling/a"
	s := etcdv3.Service{Key: key, Value: "127.0.0.1:1", TTL: shortTTL()}
	oldProc, newProc := itestclient.New(t, srv.Endpoints()), itestclient.New(t, srv.Endpoints())

	// The old process has a second service on the same lease.
	sibling := etcdv3.NewRegistrar(oldProc, etcdv3.Service{Key: "/services/rolling/b", Value: "127.0.0.1:2", TTL: shortTTL()}, itest.Logger(t))
	oldReg := etcdv3.NewRegistrar(oldProc, s, itest.Logger(t))
	for _, r := range []*etcdv3.Registrar{sibling, oldReg} {
		if err := r.RegisterContext(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	defer sibling.Deregister()
	newReg := etcdv3.NewRegistrar(newProc, s, itest.Logger(t))
	if err := newReg.RegisterContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer newReg.Deregister()

	oldReg.Deregister()
	oldReg.Deregister() // twice, as a deferred call and a signal handler may
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := admin.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || resp.Kvs[0].Lease != newReg.Status().LeaseID {
		t.Fatalf("after the old process deregistered, %s = %v, want the new process's registration on lease %x", key, resp.Kvs, newReg.Status().LeaseID)
	}

	// A Registrar that never registered deletes the key, as go-kit's.
	etcdv3.NewRegistrar(itestclient.New(t, srv.Endpoints()), s, itest.Logger(t)).Deregister()
	if itest.KeyExists(t, admin, key) {
		t.Fatal("Deregister without Register left the key")
	}
}
