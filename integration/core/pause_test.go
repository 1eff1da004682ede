package core

import (
	"context"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// A Resume that gives up (etcd unreachable) leaves the Registrar paused, so
// that a later Resume registers it.
func TestResumeAfterAResumeThatGaveUpRegisters(t *testing.T) {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("stops etcd: needs the embedded server")
	}
	c := itestclient.New(t, srv.Endpoints(), func(o *etcdv3.ClientOptions) {
		o.DialTimeout, o.RequestTimeout = 500*time.Millisecond, 500*time.Millisecond
	})
	const key = "/services/resume-again/a"
	r := etcdv3.NewRegistrar(c, etcdv3.Service{Key: key, Value: "127.0.0.1:8001", TTL: shortTTL()}, itest.Logger(t))
	if err := r.RegisterContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Deregister()
	if err := r.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := r.Resume(ctx); err == nil {
		t.Fatal("Resume with etcd stopped succeeded")
	}
	if st := r.Status(); st.State != etcdv3.StatePaused || st.Err == nil {
		t.Fatalf("status after a Resume gave up = %+v, want paused with the error", st)
	}

	srv.Start()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Resume(ctx); err != nil {
		t.Fatalf("Resume once etcd is back: %v", err)
	}
	if st := r.Status(); st.State != etcdv3.StateRegistered {
		t.Fatalf("status after Resume = %+v, want registered", st)
	}
	if !itest.KeyExists(t, srv.Client(t), key) {
		t.Fatal("Resume returned nil but the key is not in etcd")
	}
}
