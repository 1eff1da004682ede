package core

import (
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
)

func TestRegisterDiscoverDeregister(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := newClient(t, srv.Endpoints())
	const prefix = "/services/register-discover/"

	in := newInstancer(t, c, prefix)
	sub := subscribe(t, in)
	sub.waitInstances(t, 5*time.Second)

	reg := etcdv3.NewRegistrar(c, etcdv3.Service{Key: prefix + "a", Value: "127.0.0.1:8001", TTL: etcdv3.NewTTLOption(time.Second, 3*time.Second)}, testLogger(t))
	reg.Register()
	sub.waitInstances(t, 5*time.Second, "127.0.0.1:8001")
	if st := reg.Status(); st.State != etcdv3.StateRegistered || st.LeaseID == 0 || st.Err != nil {
		t.Fatalf("status after register = %+v", st)
	}

	reg.Deregister()
	sub.waitInstances(t, 5*time.Second)
	if keyExists(t, c.EtcdClient(), prefix+"a") {
		t.Fatal("key still in etcd after Deregister")
	}
	reg.Deregister() // idempotent
}
