package backoff

import (
	"testing"
	"time"
)

func TestBackoffIsCappedAndJittered(t *testing.T) {
	b := New(10*time.Millisecond, 80*time.Millisecond)
	for i := range 20 {
		d := b.Next()
		if d > 80*time.Millisecond || d < Floor {
			t.Fatalf("attempt %d: delay %v outside [1ms, 80ms]", i, d)
		}
	}
	b.Reset()
	if d := b.Next(); d > 10*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
}

func TestDelayUsesTheGivenRandomSource(t *testing.T) {
	lowest := func(int64) int64 { return 0 }
	for attempt := range 6 {
		if got := Delay(10*time.Millisecond, 80*time.Millisecond, attempt, lowest); got != Floor {
			t.Errorf("attempt %d: lowest delay %v, want the floor %v", attempt, got, Floor)
		}
	}
	highest := func(n int64) int64 { return n - 1 }
	for attempt, want := range []time.Duration{10, 20, 40, 80, 80, 80} {
		if got := Delay(10*time.Millisecond, 80*time.Millisecond, attempt, highest); got != want*time.Millisecond {
			t.Errorf("attempt %d: highest delay %v, want %v", attempt, got, want*time.Millisecond)
		}
	}
}

// A thousand processes that lost etcd together must spread over the whole
// bound: full jitter puts as many in its lower half as in its upper half,
// where a share in [d/2, d] put none.
func TestDelaySpreadsAFleetOverTheWholeBound(t *testing.T) {
	const fleet, d = 1000, 2 * time.Second
	var low int
	buckets := make([]int, 40) // 50 ms each
	for range fleet {
		got := Delay(d, d, 0, nil)
		if got < Floor || got > d {
			t.Fatalf("delay %v outside [%v, %v]", got, Floor, d)
		}
		if got < d/2 {
			low++
		}
		buckets[min(int(got/(50*time.Millisecond)), len(buckets)-1)]++
	}
	if low < 400 || low > 600 {
		t.Errorf("%d of %d delays below d/2, want about half", low, fleet)
	}
	for i, n := range buckets {
		if n > 60 { // 25 expected; 60 is beyond any honest draw
			t.Errorf("%d of %d processes within the same 50 ms (from %v)", n, fleet, time.Duration(i)*50*time.Millisecond)
		}
	}
}

func TestDelayNeverGoesBelowTheFloorNorBeyondTheBound(t *testing.T) {
	if got := Delay(time.Microsecond, time.Microsecond, 0, func(int64) int64 { return 0 }); got != time.Microsecond {
		t.Errorf("bound below the floor: %v, want the bound", got)
	}
	if got := Delay(0, 0, 3, nil); got != 0 {
		t.Errorf("zero bound: %v, want 0", got)
	}
}

func TestDelayNeverOverflows(t *testing.T) {
	for attempt := range 70 {
		d := Delay(time.Hour, 1<<62, attempt, nil)
		if d < Floor || d > 1<<62 {
			t.Fatalf("attempt %d: delay %v outside [1ms, 2^62 ns]", attempt, d)
		}
	}
}
