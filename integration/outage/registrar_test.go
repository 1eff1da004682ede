package outage

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
)

func TestRegistrarDeregisterReturnsWhileEtcdIsDownAndTheKeyNeverComesBack(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	const key = "/outage/dereg/a"
	r := etcdv3.NewRegistrar(c, service(key), itest.Logger(t))
	if err := r.RegisterContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	returnsWithin(t, requestTimeout+slack, "Registrar.Deregister", r.Deregister)

	admin := restart(t, srv)
	itest.Eventually(t, converge, "the deregistered key gone (its lease expired)", func() bool { return !itest.KeyExists(t, admin, key) })
	staysAbsent(t, admin, key, ttl+time.Second)
}

func TestRegistrarDeregisterContextReturnsWithinItsContextWhileEtcdIsDown(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	const key = "/outage/deregctx/a"
	r := etcdv3.NewRegistrar(c, service(key), itest.Logger(t))
	if err := r.RegisterContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	var err error
	returnsWithin(t, requestTimeout+slack, "Registrar.DeregisterContext(Background)", func() { err = r.DeregisterContext(context.Background()) })
	if err == nil || !errors.Is(err, etcdv3.ErrUnreachable) || !strings.Contains(err.Error(), srv.Endpoints()[0]) {
		t.Fatalf("DeregisterContext error = %v, want etcd unreachable naming %s", err, srv.Endpoints()[0])
	}

	r2 := etcdv3.NewRegistrar(c, service("/outage/deregctx/b"), itest.Logger(t))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	returnsWithin(t, 300*time.Millisecond+slack, "Registrar.DeregisterContext(300ms)", func() { err = r2.DeregisterContext(ctx) })
	if err == nil {
		t.Fatal("DeregisterContext with etcd down succeeded")
	}

	admin := restart(t, srv)
	itest.Eventually(t, converge, "the deregistered key gone", func() bool { return !itest.KeyExists(t, admin, key) })
	staysAbsent(t, admin, key, ttl+time.Second)
}

func TestRegistrarRegisterReturnsWhileEtcdIsDownAndRegistersOnceItAnswers(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	if _, err := c.GetEntries("/outage/"); err != nil { // connected
		t.Fatal(err)
	}
	srv.Stop()
	const key = "/outage/reg/a"
	r := etcdv3.NewRegistrar(c, service(key), itest.Logger(t))
	returnsWithin(t, requestTimeout+slack, "Registrar.Register", r.Register)
	if st := r.Status(); st.State != etcdv3.StateRegistering || st.Err == nil {
		t.Fatalf("status with etcd down = %+v, want registering with the error", st)
	}
	defer r.Deregister()

	admin := restart(t, srv)
	itest.Eventually(t, converge, "registered once etcd answers", func() bool { return itest.KeyExists(t, admin, key) })
	itest.Eventually(t, converge, "registrar registered", func() bool { return r.State() == etcdv3.StateRegistered })
}

func TestRegistrarRegisterContextReturnsWithinItsContextWhileEtcdIsDown(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	srv.Stop()
	r := etcdv3.NewRegistrar(c, service("/outage/regctx/a"), itest.Logger(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var err error
	returnsWithin(t, time.Second+slack, "Registrar.RegisterContext(1s)", func() { err = r.RegisterContext(ctx) })
	if err == nil || !strings.Contains(err.Error(), srv.Endpoints()[0]) {
		t.Fatalf("RegisterContext error = %v, want one naming %s", err, srv.Endpoints()[0])
	}
	returnsWithin(t, requestTimeout+slack, "EtcdClient.Register", func() { err = c.Register(service("/outage/regctx/b")) })
	if !errors.Is(err, etcdv3.ErrUnreachable) {
		t.Fatalf("Register error = %v, want etcd unreachable", err)
	}
	returnsWithin(t, requestTimeout+slack, "EtcdClient.Deregister", func() { err = c.Deregister(service("/outage/regctx/b")) })
	if !errors.Is(err, etcdv3.ErrUnreachable) {
		t.Fatalf("Deregister error = %v, want etcd unreachable", err)
	}
}

func TestRegistrationDeregisteredBeforeEtcdAnsweredNeverAppears(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	srv.Stop()
	const key = "/outage/never/a"
	r := etcdv3.NewRegistrar(c, service(key), itest.Logger(t))
	r.Register() // fails, and retries in the background
	if r.State() != etcdv3.StateRegistering {
		t.Fatalf("state = %v, want registering", r.State())
	}
	returnsWithin(t, requestTimeout+slack, "Registrar.Deregister while retrying", r.Deregister)

	admin := restart(t, srv)
	staysAbsent(t, admin, key, 2*ttl) // no pending put may bring it in
}

func TestDeregisteredKeySharingALeaseIsDeletedOnceEtcdAnswers(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	const gone, kept = "/outage/shared/gone", "/outage/shared/kept"
	rGone := etcdv3.NewRegistrar(c, service(gone), itest.Logger(t))
	rKept := etcdv3.NewRegistrar(c, service(kept), itest.Logger(t))
	for _, r := range []*etcdv3.Registrar{rGone, rKept} {
		if err := r.RegisterContext(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	defer rKept.Deregister()
	if rGone.Status().LeaseID != rKept.Status().LeaseID {
		t.Fatal("the two registrations do not share a lease")
	}
	srv.Stop()
	returnsWithin(t, requestTimeout+slack, "Registrar.Deregister of a key sharing its lease", rGone.Deregister)

	admin := restart(t, srv)
	itest.Eventually(t, converge, "the deregistered key deleted", func() bool { return !itest.KeyExists(t, admin, gone) })
	itest.Eventually(t, converge, "the other key kept alive", func() bool { return itest.KeyExists(t, admin, kept) })
	staysAbsent(t, admin, gone, ttl+time.Second)
	if !itest.KeyExists(t, admin, kept) {
		t.Fatal("the key still registered expired")
	}
}

// registering starts call (a RegisterContext or Resume that retries until
// its context ends) with etcd down and waits until its first attempt has
// failed; the returned channel gets call's error.
func registering(t *testing.T, r *etcdv3.Registrar, call func(context.Context) error) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- call(context.Background()) }()
	itest.Eventually(t, converge, "registering with an error", func() bool {
		st := r.Status()
		return st.State == etcdv3.StateRegistering && st.Err != nil
	})
	return errc
}

// endsWithin fails the test unless errc gives an error within limit.
func endsWithin(t *testing.T, limit time.Duration, what string, errc <-chan error) {
	t.Helper()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatalf("%s succeeded after Deregister", what)
		}
	case <-time.After(limit):
		t.Fatalf("%s still retrying %v after Deregister", what, limit)
	}
}

func TestRegistrarDeregisterReturnsWhileRegisterContextRetries(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	srv.Stop()
	const key = "/outage/dereg-registering/a"
	r := etcdv3.NewRegistrar(c, service(key), itest.Logger(t))
	errc := registering(t, r, r.RegisterContext)
	returnsWithin(t, requestTimeout+slack, "Registrar.Deregister while RegisterContext retries", r.Deregister)
	endsWithin(t, slack, "RegisterContext", errc)

	admin := restart(t, srv)
	staysAbsent(t, admin, key, 2*ttl)
}

func TestRegistrarDeregisterReturnsWhileResumeRetries(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv)
	const key = "/outage/dereg-resuming/a"
	r := etcdv3.NewRegistrar(c, service(key), itest.Logger(t))
	if err := r.RegisterContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	errc := registering(t, r, r.Resume)
	returnsWithin(t, requestTimeout+slack, "Registrar.Deregister while Resume retries", r.Deregister)
	endsWithin(t, slack, "Resume", errc)

	admin := restart(t, srv)
	staysAbsent(t, admin, key, 2*ttl)
}
