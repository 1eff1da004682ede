package endpointer

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/internal/itest"
)

// recordSleeps replaces e's pause with one that records the durations and
// returns at once.
func recordSleeps(e *Endpointer) *[]time.Duration {
	var mu sync.Mutex
	var got []time.Duration
	e.sleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, d)
		return ctx.Err()
	}
	return &got
}

// attempts returns the address of each attempt in a RetryError, in order.
func attempts(t *testing.T, err error) []string {
	t.Helper()
	var re *RetryError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want a *RetryError", err)
	}
	out := make([]string, len(re.Errs))
	for i, e := range re.Errs {
		out[i], _, _ = strings.Cut(e.Error(), ":")
	}
	return out
}

func TestRetryGoesToAnotherInstanceAndLosesNoRequest(t *testing.T) {
	f := newFleet()
	f.get("bad").fail.Store(true)
	e := newEndpointer(t, source(t, "bad", "good1", "good2"), f, WithStrategy(Random), WithSeed(2))
	recordSleeps(e)
	for range 300 {
		if got := call(t, e, context.Background()); got == "bad" {
			t.Fatal("answered by the failing instance")
		}
	}
	if f.get("bad").calls.Load() == 0 {
		t.Fatal("the failing instance was never tried; the test proves nothing")
	}
}

func TestRetryNeverTakesTheSameInstanceTwiceInARow(t *testing.T) {
	for _, strat := range []Strategy{RoundRobin, Random, LeastLoaded, Weighted} {
		t.Run(strat.String(), func(t *testing.T) {
			f := newFleet()
			vals := []string{jsonValue("a", "a", "", 50), jsonValue("b", "b", "", 1), jsonValue("c", "c", "", 1)}
			for _, a := range []string{"a", "b", "c"} {
				f.get(a).fail.Store(true)
			}
			e := newEndpointer(t, source(t, vals...), f, WithStrategy(strat), WithRetry(8, 0), WithSeed(4))
			recordSleeps(e)
			for range 50 {
				_, err := e.Endpoint()(context.Background(), nil)
				seq := attempts(t, err)
				if len(seq) != 8 {
					t.Fatalf("%d attempts, want 8", len(seq))
				}
				for i := 1; i < len(seq); i++ {
					if seq[i] == seq[i-1] {
						t.Fatalf("attempts %v repeat %s in a row", seq, seq[i])
					}
				}
			}
		})
	}
}

func TestRetryOnTheOnlyInstanceTakesItAgain(t *testing.T) {
	f := newFleet()
	f.get("only").fail.Store(true)
	e := newEndpointer(t, source(t, "only"), f, WithRetry(3, 0))
	recordSleeps(e)
	_, err := e.Endpoint()(context.Background(), nil)
	if seq := attempts(t, err); strings.Join(seq, ",") != "only,only,only" {
		t.Fatalf("attempts %v", seq)
	}
	if !errors.Is(err, errBackend) {
		t.Fatalf("err = %v does not unwrap to the backend's error", err)
	}
	if !strings.HasPrefix(err.Error(), "endpointer: 3 attempts failed: only: backend failed (previously: ") {
		t.Fatalf("error text %q", err)
	}
}

func TestBackoffIsCappedExponentialWithJitter(t *testing.T) {
	f := newFleet()
	f.get("a").fail.Store(true)
	f.get("b").fail.Store(true)
	e := newEndpointer(t, source(t, "a", "b"), f, WithRetry(6, 0), WithBackoff(10*time.Millisecond, 40*time.Millisecond), WithSeed(8))
	sleeps := recordSleeps(e)
	seen := map[time.Duration]bool{}
	low := 0 // pauses in the lower half of their bound: full jitter
	for range 20 {
		*sleeps = nil
		_, _ = e.Endpoint()(context.Background(), nil)
		caps := []time.Duration{10, 20, 40, 40, 40}
		if len(*sleeps) != len(caps) {
			t.Fatalf("%d pauses for 6 attempts, want 5", len(*sleeps))
		}
		for i, d := range *sleeps {
			hi := caps[i] * time.Millisecond
			if d < time.Millisecond || d > hi {
				t.Fatalf("pause %d = %v, want within [1ms, %v]", i+1, d, hi)
			}
			if d < hi/2 {
				low++
			}
			seen[d] = true
		}
	}
	if len(seen) < 50 {
		t.Fatalf("only %d distinct pauses in 100: no jitter", len(seen))
	}
	if low < 25 || low > 75 {
		t.Fatalf("%d of 100 pauses in the lower half of their bound, want about half (full jitter)", low)
	}
}

func TestBackoffSurvivesHugeBounds(t *testing.T) {
	e := &Endpointer{cfg: config{backoffBase: time.Hour, backoffMax: 1 << 62}, rng: newRNG(1)}
	for attempt := 1; attempt < 100; attempt++ {
		if d := e.backoff(attempt); d < time.Millisecond || d > 1<<62 {
			t.Fatalf("backoff(%d) = %v out of bounds", attempt, d)
		}
	}
}

func TestRetryableHookStopsRetries(t *testing.T) {
	f := newFleet()
	f.get("a").fail.Store(true)
	f.get("b").fail.Store(true)
	e := newEndpointer(t, source(t, "a", "b"), f, WithRetryable(func(err error) bool { return !errors.Is(err, errBackend) }))
	recordSleeps(e)
	_, err := e.Endpoint()(context.Background(), nil)
	var re *RetryError
	if errors.As(err, &re) || !errors.Is(err, errBackend) {
		t.Fatalf("err = %v, want the backend's own error after one attempt", err)
	}
	if n := f.get("a").calls.Load() + f.get("b").calls.Load(); n != 1 {
		t.Fatalf("%d calls, want 1", n)
	}
}

func TestCancellationIsNeverRetried(t *testing.T) {
	f := newFleet()
	e := newEndpointer(t, source(t, "a", "b"), f, WithRetry(5, 0), WithRetryable(func(error) bool { return true }))
	recordSleeps(e)
	calls := 0
	// An endpoint that reports cancellation, with the caller's context alive.
	e.mu.Lock()
	for _, en := range liveEntries(e) {
		en.ep = func(context.Context, any) (any, error) {
			calls++
			return nil, context.Canceled
		}
	}
	e.mu.Unlock()
	if _, err := e.Endpoint()(context.Background(), nil); !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("err = %v after %d calls, want context.Canceled after 1", err, calls)
	}

	// A caller's context that ends during the call.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls = 0
	e.mu.Lock()
	for _, en := range liveEntries(e) {
		en.ep = func(context.Context, any) (any, error) {
			calls++
			cancel()
			return nil, errBackend
		}
	}
	e.mu.Unlock()
	_, err := e.Endpoint()(ctx, nil)
	if !errors.Is(err, errBackend) || !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("err = %v after %d calls, want one attempt, its error and the cancellation", err, calls)
	}
	if want := "endpointer: 1 attempt failed: backend failed; stopped: context canceled"; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

func TestTimeoutDuringAnAttemptIsNamedInTheError(t *testing.T) {
	f := newFleet()
	e := newEndpointer(t, source(t, "a", "b"), f, WithRetry(5, 30*time.Millisecond))
	recordSleeps(e)
	e.mu.Lock()
	for _, en := range liveEntries(e) {
		en.ep = func(ctx context.Context, _ any) (any, error) {
			<-ctx.Done()
			return nil, errBackend // a transport that hides the context's error
		}
	}
	e.mu.Unlock()
	_, err := e.Endpoint()(context.Background(), nil)
	if !errors.Is(err, errBackend) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the attempt's error and DeadlineExceeded", err)
	}
	var re *RetryError
	if !errors.As(err, &re) || len(re.Errs) != 1 {
		t.Fatalf("err = %#v, want a RetryError with one attempt", err)
	}
}

func TestCancelDuringBackoffReturnsPromptly(t *testing.T) {
	f := newFleet()
	f.get("a").fail.Store(true)
	f.get("b").fail.Store(true)
	e := newEndpointer(t, source(t, "a", "b"), f, WithRetry(5, 0), WithBackoff(time.Hour, time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := e.Endpoint()(ctx, nil)
		done <- err
	}()
	itest.Eventually(t, 5*time.Second, "first attempt", func() bool { return f.get("a").calls.Load()+f.get("b").calls.Load() == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !errors.Is(err, errBackend) {
			t.Fatalf("err = %v, want the attempt's error and context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("call still waiting for its backoff after cancel")
	}
}

func TestOverallTimeoutBoundsTheCall(t *testing.T) {
	f := newFleet()
	f.get("a").fail.Store(true)
	f.get("b").fail.Store(true)
	e := newEndpointer(t, source(t, "a", "b"), f, WithRetry(1000, 100*time.Millisecond), WithBackoff(5*time.Millisecond, 20*time.Millisecond))
	start := time.Now()
	_, err := e.Endpoint()(context.Background(), nil)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if took < 60*time.Millisecond || took > 2*time.Second {
		t.Fatalf("call took %v with a 100ms timeout", took)
	}
	if n := f.get("a").calls.Load() + f.get("b").calls.Load(); n < 3 || n >= 1000 {
		t.Fatalf("%d attempts within the timeout", n)
	}
}

func TestRetryStartsNoGoroutine(t *testing.T) {
	f := newFleet()
	e := newEndpointer(t, source(t, "a", "b"), f, WithRetry(4, time.Second))
	recordSleeps(e)
	before := runtime.NumGoroutine()
	var during []int
	e.mu.Lock()
	for _, en := range liveEntries(e) {
		en.ep = func(context.Context, any) (any, error) {
			during = append(during, runtime.NumGoroutine())
			return nil, errBackend
		}
	}
	e.mu.Unlock()
	_, _ = e.Endpoint()(context.Background(), nil)
	if len(during) != 4 {
		t.Fatalf("%d attempts, want 4", len(during))
	}
	for _, n := range during {
		if n != before {
			t.Fatalf("goroutines %d during an attempt, %d before the call", n, before)
		}
	}
}

func TestRetryErrorText(t *testing.T) {
	if got := (&RetryError{}).Error(); got != "endpointer: no attempt made" {
		t.Fatalf("empty RetryError says %q", got)
	}
}
