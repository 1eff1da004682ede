package core

import (
	"context"
	"runtime"
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

// A Resume that starts while a Pause is deleting the key must not be undone
// by that delete: when both return, the key is in etcd exactly when the
// Registrar says registered.
func TestResumeRacingPauseEndsAsItsStateSays(t *testing.T) {
	raceBackAgainstLeave(t, "/services/race-pause/a", etcdv3.StatePaused,
		func(r *etcdv3.Registrar) error { return r.Pause(context.Background()) },
		func(r *etcdv3.Registrar) error { return r.Resume(context.Background()) })
}

// The same for a Register that starts while a Deregister is deleting the key.
func TestRegisterRacingDeregisterEndsAsItsStateSays(t *testing.T) {
	raceBackAgainstLeave(t, "/services/race-deregister/a", etcdv3.StateDeregistered,
		func(r *etcdv3.Registrar) error { return r.DeregisterContext(context.Background()) },
		func(r *etcdv3.Registrar) error { return r.RegisterContext(context.Background()) })
}

// raceBackAgainstLeave runs leave, and back as soon as the Registrar is in
// state mid (leave's delete still to come), for a bounded number of rounds,
// and fails at the first round that ends registered without the key.
func raceBackAgainstLeave(t *testing.T, key string, mid etcdv3.State, leave, back func(*etcdv3.Registrar) error) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints(), func(o *etcdv3.ClientOptions) { o.Logger = nil }) // thousands of rounds
	admin := srv.Client(t)
	r := etcdv3.NewRegistrar(c, etcdv3.Service{Key: key, Value: "127.0.0.1:8001", TTL: shortTTL()}, nil)
	if err := r.RegisterContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Deregister()
	const rounds = 1000
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < rounds && time.Now().Before(deadline); i++ {
		done := make(chan error, 1)
		go func() {
			for r.State() != mid {
				runtime.Gosched()
			}
			done <- back(r)
		}()
		lerr := leave(r)
		berr := <-done
		st := r.Status()
		if exists := itest.KeyExists(t, admin, key); st.State == etcdv3.StateRegistered && !exists {
			t.Fatalf("round %d: leave = %v, back = %v; status %+v, but %s is not in etcd", i, lerr, berr, st, key)
		}
		if berr != nil {
			t.Fatalf("round %d: back = %v", i, berr)
		}
	}
}
