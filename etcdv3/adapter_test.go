package etcdv3

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/internal/itest"
)

// The Registrar on a go-kit style Client: go-kit's Register and Deregister
// take no context and may block, yet no Registrar call may wait past its
// bound, and what was deregistered, or given up, must not stay registered.

// goKitBound replaces DefaultRequestTimeout, the bound of the calls the
// Registrar makes on a go-kit style client for its methods that take no
// context, so that the tests of that bound are quick.
const goKitBound = 200 * time.Millisecond

// boundSlack is what a loaded machine may add to a bound.
const boundSlack = time.Second

func withGoKitBound(r *Registrar) *Registrar {
	r.client.(*goKitClient).timeout = goKitBound
	return r
}

// hang makes the fake's next Register (or Deregister, with dereg) block
// until release, which may be called more than once; the test defers it
// after any deferred call that could wait for the hung one. entered is
// closed once the call has started.
func hang(f *goKitFake, dereg bool) (entered <-chan struct{}, release func()) {
	in, out := make(chan struct{}), make(chan struct{})
	hook := func() { close(in); <-out }
	f.mu.Lock()
	if dereg {
		f.onDeregister = hook
	} else {
		f.onRegister = hook
	}
	f.mu.Unlock()
	return in, sync.OnceFunc(func() { close(out) })
}

// returnsWithin fails the test unless call returns within limit.
func returnsWithin(t *testing.T, limit time.Duration, what string, call func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		call()
	}()
	select {
	case <-done:
	case <-time.After(limit):
		t.Fatalf("%s still blocked after %v", what, limit)
	}
}

func (f *goKitFake) has(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.kv[key]
	return ok
}

func (f *goKitFake) counts() (regs, deregs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.regs, f.deregs
}

// Register tries once within its bound and leaves the retries to the
// background, also when the client's Register blocks; the retries start no
// second Register while the first has not returned.
func TestRegistrarOnAGoKitClientRegisterReturnsWithinItsBoundWhileTheClientsRegisterHangs(t *testing.T) {
	f := newGoKitFake()
	defer f.close()
	_, release := hang(f, false)
	const key = "/p/a"
	r := withGoKitBound(NewRegistrar(f, Service{Key: key, Value: "1:1", TTL: NewTTLOption(MinHeartbeat, time.Second)}, log.NewNopLogger()))
	defer r.Deregister()
	defer release()
	returnsWithin(t, goKitBound+boundSlack, "Register", r.Register)
	if st := r.Status(); st.State != StateRegistering || !errors.Is(st.Err, context.DeadlineExceeded) {
		t.Fatalf("status while the client's Register hangs = %+v, want registering with the deadline", st)
	}
	itest.Eventually(t, 5*time.Second, "a retry while the first Register hangs", func() bool {
		st := r.Status()
		return st.Err != nil && strings.Contains(st.Err.Error(), "has not returned")
	})
	if regs, _ := f.counts(); regs != 1 {
		t.Fatalf("%d Register calls while the first hangs, want 1", regs)
	}
	release()
	itest.Eventually(t, 5*time.Second, "registered once the client's Register returns", func() bool {
		return r.State() == StateRegistered && f.has(key)
	})
}

// A RegisterContext that gives up while the client's Register hangs returns
// within its context; the Register, when it returns, is undone: the caller
// was told it failed.
func TestRegistrarOnAGoKitClientRegisterContextReturnsWithinItsContextWhileTheClientsRegisterHangs(t *testing.T) {
	f := newGoKitFake()
	defer f.close()
	entered, release := hang(f, false)
	defer release()
	const key = "/p/a"
	r := NewRegistrar(f, Service{Key: key, Value: "1:1"}, log.NewNopLogger())
	ctx, cancel := context.WithTimeout(context.Background(), goKitBound)
	defer cancel()
	var err error
	returnsWithin(t, goKitBound+boundSlack, "RegisterContext", func() { err = r.RegisterContext(ctx) })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RegisterContext = %v, want the deadline", err)
	}
	if st := r.State(); st != StateIdle {
		t.Fatalf("state after RegisterContext gave up = %v, want idle", st)
	}
	<-entered
	release()
	itest.Eventually(t, 5*time.Second, "the late Register undone", func() bool {
		_, deregs := f.counts()
		return deregs == 1 && !f.has(key)
	})
}

// Deregister returns within its bound while a retry's Register hangs, and
// the key never comes back: the delete follows that Register.
func TestRegistrarOnAGoKitClientDeregisterReturnsWhileARetrysRegisterHangs(t *testing.T) {
	f := newGoKitFake()
	defer f.close()
	f.regErr = errors.New("fake: etcd down")
	const key = "/p/a"
	r := withGoKitBound(NewRegistrar(f, Service{Key: key, Value: "1:1", TTL: NewTTLOption(MinHeartbeat, time.Second)}, log.NewNopLogger()))
	r.Register() // fails; retries
	entered, release := hang(f, false)
	defer release()
	f.mu.Lock()
	f.regErr = nil // the hanging retry will succeed
	f.mu.Unlock()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no retry")
	}
	returnsWithin(t, goKitBound+boundSlack, "Deregister", r.Deregister)
	if st := r.State(); st != StateDeregistered {
		t.Fatalf("state = %v, want deregistered", st)
	}
	release()
	itest.Eventually(t, 5*time.Second, "the key deleted after the hung Register put it", func() bool {
		_, deregs := f.counts()
		return deregs >= 1 && !f.has(key)
	})
}

// DeregisterContext returns within its context while the client's
// Deregister hangs; the delete goes on.
func TestRegistrarOnAGoKitClientDeregisterContextReturnsWithinItsContextWhileTheClientsDeregisterHangs(t *testing.T) {
	f := newGoKitFake()
	defer f.close()
	const key = "/p/a"
	r := NewRegistrar(f, Service{Key: key, Value: "1:1"}, log.NewNopLogger())
	r.Register()
	if !f.has(key) {
		t.Fatal("not registered")
	}
	_, release := hang(f, true)
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), goKitBound)
	defer cancel()
	var err error
	returnsWithin(t, goKitBound+boundSlack, "DeregisterContext", func() { err = r.DeregisterContext(ctx) })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DeregisterContext = %v, want the deadline", err)
	}
	release()
	itest.Eventually(t, 5*time.Second, "the key deleted once the client's Deregister returns", func() bool { return !f.has(key) })
}

// The adapter runs go-kit's calls one at a time, in order: a Register
// waits for the call before it, and the Deregisters queued behind a call
// that has not returned are made once, after it.
func TestGoKitClientRunsCallsOneAtATimeAndSharesAQueuedDeregister(t *testing.T) {
	f := newGoKitFake()
	defer f.close()
	entered, release := hang(f, false)
	defer release()
	a := registrarClientOf(f)
	s := Service{Key: "/p/a", Value: "1:1"}
	gaveUp := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), goKitBound)
		t.Cleanup(cancel)
		return ctx
	}
	if err := a.RegisterContext(gaveUp(), s); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("register while the client's Register hangs = %v, want the deadline", err)
	}
	<-entered
	for range 2 {
		if err := a.deregister(gaveUp(), s, true); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("deregister queued behind the hung Register = %v, want the deadline", err)
		}
	}
	if err := a.RegisterContext(gaveUp(), s); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("register behind the queued deregister = %v, want the deadline", err)
	}
	if regs, deregs := f.counts(); regs != 1 || deregs != 0 {
		t.Fatalf("while the first Register hangs: %d Register and %d Deregister calls, want 1 and 0", regs, deregs)
	}
	release()
	// The hung Register succeeds; it is undone (its caller gave up), then
	// the queued Deregister, shared by both callers, is made once.
	itest.Eventually(t, 5*time.Second, "the undo and the queued delete made", func() bool {
		_, deregs := f.counts()
		return deregs == 2
	})
	if err := a.RegisterContext(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if regs, deregs := f.counts(); regs != 2 || deregs != 2 || !f.has(s.Key) {
		t.Fatalf("after a last Register: %d Register and %d Deregister calls, key in the store %v; want 2, 2 and the key", regs, deregs, f.has(s.Key))
	}
}
