package endpointer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"

	"github.com/etcdsd/etcdsd/internal/itest"
)

// clock is a fake ejection clock and its timers, which Add runs when they
// are due, in the caller's goroutine.
type clock struct {
	mu     sync.Mutex
	now    int64
	timers []*timer
}

type timer struct {
	at            int64
	f             func()
	stopped, done bool
}

// fakeClock replaces e's ejection clock and timers; it starts at 1 ns.
func fakeClock(e *Endpointer) *clock {
	c := &clock{now: 1}
	e.od.now = c.Load
	e.od.after = c.after
	return c
}

func (c *clock) Load() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) after(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{at: c.now + int64(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		pending := !t.stopped && !t.done
		t.stopped = true
		return pending
	}
}

// Add moves the clock on by d nanoseconds and runs the timers due.
func (c *clock) Add(d int64) {
	c.mu.Lock()
	c.now += d
	var due []*timer
	for _, t := range c.timers {
		if !t.stopped && !t.done && t.at <= c.now {
			t.done = true
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

// pending returns the number of timers neither run nor stopped.
func (c *clock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped && !t.done {
			n++
		}
	}
	return n
}

// ejections records what the ejection hook is told.
type ejections struct {
	mu  sync.Mutex
	got []Ejection
}

func (r *ejections) hook(ej Ejection) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, ej)
}

func (r *ejections) list() []Ejection {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Ejection(nil), r.got...)
}

// once makes n calls through e without retry and returns how many failed.
func once(e *Endpointer, ctx context.Context, n int) int {
	failed := 0
	for range n {
		ep, err := e.Pick(ctx)
		if err != nil {
			panic(err)
		}
		if _, err := ep(ctx, nil); err != nil {
			failed++
		}
	}
	return failed
}

func TestInstanceFailingFiveTimesInARowIsEjected(t *testing.T) {
	f := newFleet()
	f.get("a").fail.Store(true)
	var rec ejections
	e := newEndpointer(t, source(t, "a", "b", "c", "d"), f, WithEjectionHook(rec.hook))
	fakeClock(e)
	if failed := once(e, context.Background(), 20); failed != 5 {
		t.Fatalf("%d of 20 round-robin calls failed, want a's 5", failed)
	}
	got := rec.list()
	if len(got) != 1 {
		t.Fatalf("%d ejections, want 1: %+v", len(got), got)
	}
	ej := got[0]
	if ej.Address != "a" || ej.Failures != 5 || ej.Count != 1 || ej.Duration != DefaultEjectionTime || !errors.Is(ej.Err, errBackend) {
		t.Fatalf("ejection %+v, want a after 5 failures, count 1, for 30s, with the backend's error", ej)
	}
	if failed := once(e, context.Background(), 300); failed != 0 {
		t.Fatalf("%d calls failed after the ejection: the ejected instance was picked", failed)
	}
	if n := f.get("a").calls.Load(); n != 5 {
		t.Fatalf("a called %d times, want its 5 failures only", n)
	}
}

func TestEveryStrategySkipsAnEjectedInstance(t *testing.T) {
	for _, st := range []Strategy{RoundRobin, Random, LeastLoaded, Weighted} {
		t.Run(st.String(), func(t *testing.T) {
			f := newFleet()
			vals := []string{jsonValue("a", "a", "v1", 50), jsonValue("b", "b", "v1", 1), jsonValue("c", "c", "v1", 1)}
			f.get("a").fail.Store(true)
			e := newEndpointer(t, source(t, vals...), f, WithStrategy(st), WithSeed(5), WithEjection(3, time.Minute, 50))
			fakeClock(e)
			ctx := WithVersion(context.Background(), "v1")
			for f.get("a").calls.Load() < 3 {
				once(e, ctx, 1)
			}
			if failed := once(e, ctx, 500); failed != 0 {
				t.Fatalf("%d of 500 calls failed after a was ejected", failed)
			}
			if n := f.get("b").calls.Load() + f.get("c").calls.Load(); n < 500 {
				t.Fatalf("b and c served %d calls, want the 500", n)
			}
		})
	}
}

func TestSuccessResetsConsecutiveFailures(t *testing.T) {
	f := newFleet()
	var rec ejections
	e := newEndpointer(t, source(t, "a", "b"), f, WithEjectionHook(rec.hook), WithStrategy(Random))
	fakeClock(e)
	a := f.get("a")
	for range 10 {
		a.fail.Store(true)
		for a.calls.Load()%5 != 4 {
			once(e, context.Background(), 1)
		}
		a.fail.Store(false)
		for a.calls.Load()%5 != 0 {
			once(e, context.Background(), 1)
		}
	}
	if got := rec.list(); len(got) != 0 {
		t.Fatalf("ejected %+v after never more than 4 failures in a row", got)
	}
}

func TestEjectionLastsBaseTimeTimesEjectionsUpToTenfold(t *testing.T) {
	f := newFleet()
	a := f.get("a")
	a.fail.Store(true)
	var rec ejections
	const base = time.Second
	e := newEndpointer(t, source(t, "a", "b"), f, WithEjection(2, base, 50), WithEjectionHook(rec.hook))
	clock := fakeClock(e)
	for i := 1; i <= 12; i++ {
		// Back as soon as the last ejection ends: no decay.
		for len(rec.list()) < i {
			once(e, context.Background(), 1)
		}
		d := rec.list()[i-1].Duration
		if want := base * time.Duration(min(i, 10)); d != want {
			t.Fatalf("ejection %d for %v, want %v", i, d, want)
		}
		calls := a.calls.Load()
		clock.Add(int64(d) - 1)
		once(e, context.Background(), 20)
		if a.calls.Load() != calls {
			t.Fatalf("ejection %d: a picked 1 ns before its %v were over", i, d)
		}
		clock.Add(1)
		if once(e, context.Background(), 4) == 0 {
			t.Fatalf("ejection %d: a not picked again after %v", i, d)
		}
	}
}

func TestEjectionCountFallsWhileBackInService(t *testing.T) {
	f := newFleet()
	a := f.get("a")
	a.fail.Store(true)
	var rec ejections
	const base = time.Second
	e := newEndpointer(t, source(t, "a", "b"), f, WithEjection(1, base, 50), WithEjectionHook(rec.hook))
	clock := fakeClock(e)
	eject := func() Ejection {
		n := len(rec.list())
		for len(rec.list()) == n {
			once(e, context.Background(), 1)
		}
		ej := rec.list()[n]
		clock.Add(int64(ej.Duration))
		return ej
	}
	for want := 1; want <= 4; want++ {
		if ej := eject(); ej.Count != want {
			t.Fatalf("count %d, want %d", ej.Count, want)
		}
	}
	// Back for two and a half base times: two off the count of 4.
	clock.Add(int64(5 * base / 2))
	if ej := eject(); ej.Count != 3 || ej.Duration != 3*base {
		t.Fatalf("after 2.5 base times in service: %+v, want count 3 for 3s", ej)
	}
	// Back for a long time: it starts over.
	clock.Add(int64(time.Hour))
	if ej := eject(); ej.Count != 1 || ej.Duration != base {
		t.Fatalf("after an hour in service: %+v, want count 1 for 1s", ej)
	}
}

func TestEjectionNeverExceedsTheMaxShare(t *testing.T) {
	for _, tc := range []struct {
		instances, percent, want int
	}{
		{1, 50, 0}, {1, 100, 1}, {2, 50, 1}, {3, 50, 1}, {4, 50, 2}, {10, 50, 5}, {10, 10, 1}, {10, 100, 10},
	} {
		t.Run(fmt.Sprintf("%d-at-%d%%", tc.instances, tc.percent), func(t *testing.T) {
			f := newFleet()
			var vals []string
			for i := range tc.instances {
				addr := fmt.Sprintf("i%d", i)
				vals = append(vals, addr)
				f.get(addr).fail.Store(true)
			}
			var rec ejections
			e := newEndpointer(t, source(t, vals...), f, WithEjection(2, time.Minute, tc.percent), WithEjectionHook(rec.hook))
			fakeClock(e)
			once(e, context.Background(), 40*tc.instances)
			if got := len(rec.list()); got != tc.want {
				t.Fatalf("%d of %d failing instances ejected at %d%%, want %d", got, tc.instances, tc.percent, tc.want)
			}
		})
	}
}

func TestEveryCandidateEjectedStillServes(t *testing.T) {
	f := newFleet()
	vals := []string{jsonValue("a", "a", "v1", 1), jsonValue("b", "b", "v1", 1), jsonValue("c", "c", "v1", 1), jsonValue("d", "d", "v2", 1)}
	d := f.get("d")
	d.fail.Store(true)
	var rec ejections
	e := newEndpointer(t, source(t, vals...), f, WithEjectionHook(rec.hook))
	fakeClock(e)
	v2 := WithVersion(context.Background(), "v2")
	once(e, v2, 5)
	if len(rec.list()) != 1 {
		t.Fatal("d not ejected")
	}
	// The only v2 instance is ejected: v2 requests still reach it, rather
	// than fail without trying.
	d.fail.Store(false)
	if got := call(t, e, v2); got != "d" {
		t.Fatalf("v2 request answered by %s", got)
	}
	// Requests without a version skip it.
	calls := d.calls.Load()
	once(e, context.Background(), 30)
	if d.calls.Load() != calls {
		t.Fatal("ejected d picked for a request that has other candidates")
	}
}

// An ejection resets the instance's count of failures, and the failures
// of calls that reach it while it is ejected (the only candidate of a
// request, or calls in flight) do not count: back in service, it takes
// consecutive new failures to eject it again.
func TestFailuresWhileEjectedDoNotCount(t *testing.T) {
	f := newFleet()
	vals := []string{jsonValue("a", "a", "v1", 1), jsonValue("b", "b", "v1", 1), jsonValue("c", "c", "v1", 1), jsonValue("d", "d", "v2", 1)}
	f.get("d").fail.Store(true)
	var rec ejections
	const base = time.Second
	e := newEndpointer(t, source(t, vals...), f, WithEjection(3, base, 50), WithEjectionHook(rec.hook))
	clock := fakeClock(e)
	v2 := WithVersion(context.Background(), "v2")
	once(e, v2, 3)
	if n := len(rec.list()); n != 1 {
		t.Fatalf("%d ejections after 3 failures, want 1", n)
	}
	// d is the only v2 instance: v2 requests reach it while it is ejected.
	if failed := once(e, v2, 10); failed != 10 {
		t.Fatalf("%d of 10 calls to the ejected d failed, want 10", failed)
	}
	clock.Add(int64(base))
	once(e, v2, 1)
	if got := rec.list(); len(got) != 1 {
		t.Fatalf("back in service, 1 failure ejected d again: %+v", got[1:])
	}
	once(e, v2, 2)
	got := rec.list()
	if len(got) != 2 || got[1].Failures != 3 {
		t.Fatalf("ejections %+v, want a second one after 3 new failures", got)
	}
}

func TestRetryAfterAFailurePrefersAnotherInstanceToAnEjectedOne(t *testing.T) {
	f := newFleet()
	for _, a := range []string{"a", "b", "c"} {
		f.get(a).fail.Store(true)
	}
	e := newEndpointer(t, source(t, "a", "b", "c", "d"), f, WithRetry(2, 0), WithEjection(1, time.Minute, 50), WithSeed(3))
	recordSleeps(e)
	fakeClock(e)
	// a and b end up ejected (2 of 4); c keeps failing; d answers.
	for range 50 {
		_, _ = e.Endpoint()(context.Background(), nil)
	}
	for range 100 {
		resp, err := e.Endpoint()(context.Background(), nil)
		if err != nil {
			t.Fatalf("call failed with c failing, d fine and a, b ejected: %v", err)
		}
		if resp != "d" {
			t.Fatalf("answered by %v", resp)
		}
	}
}

func TestRetiredEjectedInstanceFreesItsShare(t *testing.T) {
	f := newFleet()
	f.get("a").fail.Store(true)
	f.get("b").fail.Store(true)
	var rec ejections
	src := source(t, "a", "b")
	e := newEndpointer(t, src, f, WithEjection(1, time.Minute, 50), WithEjectionHook(rec.hook))
	fakeClock(e)
	once(e, context.Background(), 10)
	if got := rec.list(); len(got) != 1 {
		t.Fatalf("%d ejections of 2 failing instances at 50%%, want 1", len(got))
	}
	gone := rec.list()[0].Address
	stays := map[string]string{"a": "b", "b": "a"}[gone]
	set(src, stays, "c")
	itest.Eventually(t, 5*time.Second, gone+" replaced by c", func() bool {
		ins := e.Instances()
		return len(ins) == 2 && ins[1].Address == "c"
	})
	once(e, context.Background(), 10)
	if got := rec.list(); len(got) != 2 || got[1].Address != stays {
		t.Fatalf("ejections %+v: want %s ejected once %s left", got, stays, gone)
	}
}

func TestCancelledCallsCountForNothing(t *testing.T) {
	f := newFleet()
	var rec ejections
	e := newEndpointer(t, source(t, "a", "b"), f, WithEjection(1, time.Minute, 50), WithEjectionHook(rec.hook), WithRetry(1, 0))
	fakeClock(e)
	e.mu.Lock()
	for _, en := range liveEntries(e) {
		en.ep = func(context.Context, any) (any, error) { return nil, fmt.Errorf("transport: %w", context.Canceled) }
	}
	e.mu.Unlock()
	once(e, context.Background(), 10)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.mu.Lock()
	for _, en := range liveEntries(e) {
		en.ep = func(context.Context, any) (any, error) {
			cancel()
			return nil, errBackend
		}
	}
	e.mu.Unlock()
	once(e, ctx, 10)
	if got := rec.list(); len(got) != 0 {
		t.Fatalf("cancelled calls ejected %+v", got)
	}
}

func TestDeadlineCountsAsFailure(t *testing.T) {
	f := newFleet()
	var rec ejections
	e := newEndpointer(t, source(t, "a", "b"), f, WithEjection(2, time.Minute, 50), WithEjectionHook(rec.hook))
	fakeClock(e)
	e.mu.Lock()
	liveEntries(e)["a"].ep = func(ctx context.Context, _ any) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	e.mu.Unlock()
	for len(rec.list()) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		_, _ = e.Endpoint()(ctx, nil)
		cancel()
	}
	if got := rec.list()[0]; got.Address != "a" || !errors.Is(got.Err, context.DeadlineExceeded) {
		t.Fatalf("ejection %+v, want a for its deadline", got)
	}
}

func TestEjectOnHookDecidesWhatIsAFailure(t *testing.T) {
	errNotFound := errors.New("not found")
	f := newFleet()
	var rec ejections
	e := newEndpointer(t, source(t, "a", "b"), f, WithEjection(3, time.Minute, 50), WithEjectionHook(rec.hook),
		WithEjectOn(func(err error) bool { return !errors.Is(err, errNotFound) }))
	fakeClock(e)
	a := liveEntries(e)["a"]
	var answers atomic.Int64
	e.mu.Lock()
	a.ep = func(context.Context, any) (any, error) {
		// Two transport failures, then an answer that is an error, again
		// and again: never three failures in a row.
		if answers.Add(1)%3 == 0 {
			return nil, errNotFound
		}
		return nil, errBackend
	}
	e.mu.Unlock()
	for answers.Load() < 60 {
		once(e, context.Background(), 1)
	}
	if got := rec.list(); len(got) != 0 {
		t.Fatalf("ejected %+v, though every third error was an answer", got)
	}
}

func TestWithoutEjectionFailingInstanceKeepsItsTurn(t *testing.T) {
	f := newFleet()
	f.get("a").fail.Store(true)
	e := newEndpointer(t, source(t, "a", "b"), f, WithoutEjection())
	if e.od != nil {
		t.Fatal("ejection state kept")
	}
	if failed := once(e, context.Background(), 100); failed != 50 {
		t.Fatalf("%d of 100 round-robin calls failed, want a's 50", failed)
	}
}

func TestPickWithEjectedInstancesDoesNotAllocate(t *testing.T) {
	for _, st := range []Strategy{RoundRobin, Random, LeastLoaded, Weighted} {
		t.Run(st.String(), func(t *testing.T) {
			f := newFleet()
			var vals []string
			for i := range 8 {
				vals = append(vals, fmt.Sprint(i))
				f.get(fmt.Sprint(i)).fail.Store(i < 4)
			}
			e := newEndpointer(t, source(t, vals...), f, WithStrategy(st), WithEjection(1, time.Minute, 50))
			fakeClock(e)
			once(e, context.Background(), 100)
			ctx := context.Background()
			if n := testing.AllocsPerRun(1000, func() {
				if _, err := e.Pick(ctx); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Fatalf("%v allocations per pick", n)
			}
		})
	}
}

func TestInstanceMiddlewareWrapsEachEndpointOnce(t *testing.T) {
	f := newFleet()
	var made atomic.Int32
	var order []string
	var mu sync.Mutex
	tag := func(name string) endpoint.Middleware {
		return func(next endpoint.Endpoint) endpoint.Endpoint {
			if name == "outer" {
				made.Add(1)
			}
			return func(ctx context.Context, req any) (any, error) {
				mu.Lock()
				order = append(order, name)
				mu.Unlock()
				return next(ctx, req)
			}
		}
	}
	src := source(t, "a", "b")
	e := newEndpointer(t, src, f, WithInstanceMiddleware(tag("outer")), WithInstanceMiddleware(tag("inner")))
	for range 10 {
		call(t, e, context.Background())
	}
	if n := made.Load(); n != 2 {
		t.Fatalf("middleware applied %d times for 2 addresses and 10 calls, want 2", n)
	}
	if got := strings.Join(order[:4], ","); got != "outer,inner,outer,inner" {
		t.Fatalf("order %s, want the first given outermost", got)
	}
	set(src, "a", "b", "c")
	waitLen(t, e, 3)
	if n := made.Load(); n != 3 {
		t.Fatalf("middleware applied %d times after a third address, want 3", n)
	}
}

func TestInstanceMiddlewareErrorsAreRetriedAndEjected(t *testing.T) {
	f := newFleet()
	errOpen := errors.New("breaker open")
	var rec ejections
	open := func(next endpoint.Endpoint) endpoint.Endpoint {
		return func(ctx context.Context, req any) (any, error) {
			resp, err := next(ctx, req)
			if resp == "a" {
				return nil, errOpen
			}
			return resp, err
		}
	}
	e := newEndpointer(t, source(t, "a", "b", "c"), f, WithInstanceMiddleware(open), WithEjectionHook(rec.hook))
	recordSleeps(e)
	fakeClock(e)
	for range 30 {
		if got := call(t, e, context.Background()); got == "a" {
			t.Fatal("answered through an open breaker")
		}
	}
	if got := rec.list(); len(got) != 1 || got[0].Address != "a" || !errors.Is(got[0].Err, errOpen) {
		t.Fatalf("ejections %+v, want a for the middleware's error", got)
	}
}

func TestEjectionOptionsRejectBadValues(t *testing.T) {
	for _, tc := range []struct {
		opt  Option
		want string
	}{
		{WithEjection(0, time.Second, 50), "ejection after 0 failures: must be >= 1"},
		{WithEjection(5, 0, 50), "ejection time 0s: must be > 0"},
		{WithEjection(5, time.Second, 0), "max ejection percent 0: must be within [1, 100]"},
		{WithEjection(5, time.Second, 101), "max ejection percent 101: must be within [1, 100]"},
		{WithEjectOn(nil), "eject-on hook is nil"},
		{WithEjectionHook(nil), "ejection hook is nil"},
		{WithInstanceMiddleware(nil), "instance middleware is nil"},
	} {
		_, err := New(source(t, "a"), newFleet().factory, nil, tc.opt)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want ErrInvalid naming %q", err, tc.want)
		}
	}
}

func TestEjectedInstanceComesBackOnItsOwnTimer(t *testing.T) {
	f := newFleet()
	a := f.get("a")
	a.fail.Store(true)
	var rec ejections
	e := newEndpointer(t, source(t, "a", "b"), f, WithEjection(1, 50*time.Millisecond, 50), WithEjectionHook(rec.hook))
	for len(rec.list()) == 0 {
		once(e, context.Background(), 1)
	}
	ejected := time.Now()
	a.fail.Store(false)
	calls := a.calls.Load()
	itest.Eventually(t, 5*time.Second, "a picked again", func() bool {
		once(e, context.Background(), 2)
		return a.calls.Load() > calls
	})
	if took := time.Since(ejected); took < 50*time.Millisecond {
		t.Fatalf("a back %v after an ejection of 50ms", took)
	}
}

func TestCloseStopsTheEjectionTimers(t *testing.T) {
	f := newFleet()
	f.get("a").fail.Store(true)
	f.get("b").fail.Store(true)
	e, err := New(source(t, "a", "b", "c", "d"), f.factory, nil, WithEjection(1, time.Hour, 50))
	if err != nil {
		t.Fatal(err)
	}
	c := fakeClock(e)
	once(e, context.Background(), 8)
	if n := c.pending(); n != 2 {
		t.Fatalf("%d ejection timers, want 2", n)
	}
	e.Close()
	if n := c.pending(); n != 0 {
		t.Fatalf("%d ejection timers left after Close", n)
	}
}
