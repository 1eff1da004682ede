package endpointer

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/endpointer"
	"github.com/etcdsd/etcdsd/internal/itest"
)

// The shape of the kill -9 runs: 8 callers, each sending a request every
// 20 ms (400 requests/s), 3 instances in separate processes registered
// with a 3 s lease; the first is killed after 400 requests, and traffic
// goes on until 2,000 requests and the dead instance's key are gone.
const (
	killCallers = 8
	killPace    = 20 * time.Millisecond
	killTotal   = 2000
	killAfter   = killTotal / 5
	killTTL     = 3 * time.Second
)

// killRun is what a kill -9 run measured.
type killRun struct {
	calls       int64
	errs        []error
	failed      int           // failed attempts at the dead instance after the kill
	lastFailure time.Duration // after the kill
	ejected     time.Duration // when it was ejected, after the kill; 0 if it was not
	ejections   []endpointer.Ejection
	dropped     time.Duration // when its key's expiry reached the Endpointer, after the kill
}

// killOneOfThreeUnderLoad kills one of three HTTP services with SIGKILL
// while killCallers goroutines call them through an Endpointer on an
// etcdv3.Instancer, with 3 attempts per call, and counts the attempts that
// reached the dead one after the kill.
func killOneOfThreeUnderLoad(t *testing.T, opts ...endpointer.Option) killRun {
	e := newEnv(t)
	victim := e.startProcess("p1", "v1", killTTL)
	e.startProcess("p2", "v1", killTTL)
	e.startProcess("p3", "v1", killTTL)

	var (
		mu        sync.Mutex
		ejections []endpointer.Ejection
		ejectedAt time.Time
	)
	hook := endpointer.WithEjectionHook(func(ej endpointer.Ejection) {
		mu.Lock()
		defer mu.Unlock()
		ejections = append(ejections, ej)
		if ejectedAt.IsZero() {
			ejectedAt = time.Now()
		}
	})
	c := e.newClient(append([]endpointer.Option{endpointer.WithRetry(3, 5*time.Second), hook}, opts...)...)
	itest.Eventually(t, 10*time.Second, "three instances", func() bool { return len(c.Instances()) == 3 })

	var (
		calls    atomic.Int64
		errsMu   sync.Mutex
		errs     []error
		quit     = make(chan struct{})
		stopOnce sync.Once
		wg       sync.WaitGroup
	)
	stop := func() {
		stopOnce.Do(func() {
			close(quit)
			wg.Wait()
		})
	}
	for range killCallers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(killPace)
			defer tick.Stop()
			for {
				select {
				case <-quit:
					return
				case <-tick.C:
				}
				if _, err := c.Endpoint()(context.Background(), struct{}{}); err != nil {
					errsMu.Lock()
					errs = append(errs, err)
					errsMu.Unlock()
				}
				calls.Add(1)
			}
		}()
	}
	t.Cleanup(stop)

	itest.Eventually(t, 15*time.Second, "traffic before the kill", func() bool { return calls.Load() >= killAfter })
	killed := time.Now()
	victim.kill()
	itest.Eventually(t, 15*time.Second, "the dead instance's key expired", func() bool { return !c.has(victim.addr) })
	dropped := time.Since(killed)
	itest.Eventually(t, 15*time.Second, "2,000 requests", func() bool { return calls.Load() >= killTotal })
	stop()

	r := killRun{calls: calls.Load(), errs: errs, dropped: dropped, ejections: ejections}
	var last time.Time
	r.failed, last = c.failuresSince(victim.addr, killed)
	if r.failed > 0 {
		r.lastFailure = last.Sub(killed)
	}
	if !ejectedAt.IsZero() {
		r.ejected = ejectedAt.Sub(killed)
	}
	for _, s := range []string{"p2", "p3"} {
		for _, in := range c.Instances() {
			if in.ID == s {
				if n := c.failuresAt(in.Address); n > 0 {
					t.Errorf("%d failed attempts at %s, which stayed up", n, s)
				}
			}
		}
	}
	t.Logf("%d requests, %d failed; after the kill: %d failed attempts at the dead instance, the last %v after it; ejected after %v (%+v); key expiry seen after %v",
		r.calls, len(r.errs), r.failed, r.lastFailure.Round(time.Millisecond), r.ejected.Round(time.Millisecond), r.ejections, r.dropped.Round(time.Millisecond))
	return r
}

func TestEjectionBoundsFailedAttemptsAfterKill9(t *testing.T) {
	r := killOneOfThreeUnderLoad(t)
	if len(r.errs) > 0 {
		t.Fatalf("%d of %d requests failed, first: %v", len(r.errs), r.calls, r.errs[0])
	}
	if bound := endpointer.DefaultEjectAfter * killCallers; r.failed > bound {
		t.Fatalf("%d failed attempts at the dead instance after the kill, want at most %d (%d per concurrent caller)", r.failed, bound, endpointer.DefaultEjectAfter)
	}
	if len(r.ejections) != 1 || r.ejections[0].Count != 1 || r.ejections[0].Duration != endpointer.DefaultEjectionTime {
		t.Fatalf("ejections %+v, want the dead instance once, for 30s", r.ejections)
	}
	if r.lastFailure > r.ejected+time.Second {
		t.Fatalf("an attempt reached the dead instance %v after the kill, %v after its ejection", r.lastFailure, r.lastFailure-r.ejected)
	}
}

// Without ejection, retries alone lose no request either, but every
// caller keeps reaching the dead instance until its key expires: the
// figure ejection improves on.
func TestWithoutEjectionDeadInstanceIsTriedUntilItsKeyExpires(t *testing.T) {
	r := killOneOfThreeUnderLoad(t, endpointer.WithoutEjection())
	if len(r.errs) > 0 {
		t.Fatalf("%d of %d requests failed, first: %v", len(r.errs), r.calls, r.errs[0])
	}
	if len(r.ejections) != 0 {
		t.Fatalf("ejections %+v with ejection off", r.ejections)
	}
	// The lease had at least ttl - heartbeat left at the kill.
	if least := killTTL - killTTL/3 - 500*time.Millisecond; r.lastFailure < least {
		t.Fatalf("last failed attempt %v after the kill; without ejection attempts should go on until the key expires (over %v)", r.lastFailure, least)
	}
}
