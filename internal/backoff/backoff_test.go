package backoff

import (
	"testing"
	"time"
)

func TestBackoffIsCappedAndJittered(t *testing.T) {
	b := New(10*time.Millisecond, 80*time.Millisecond)
	var last time.Duration
	for i := range 20 {
		d := b.Next()
		if d > 80*time.Millisecond || d < 5*time.Millisecond {
			t.Fatalf("attempt %d: delay %v outside [5ms, 80ms]", i, d)
		}
		last = d
	}
	if last < 40*time.Millisecond {
		t.Fatalf("delay after many attempts = %v, want near the cap", last)
	}
	b.Reset()
	if d := b.Next(); d > 10*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
}

func TestDelayUsesTheGivenRandomSource(t *testing.T) {
	lowest := func(int64) int64 { return 0 }
	for attempt, want := range []time.Duration{5, 10, 20, 40, 40, 40} {
		if got := Delay(10, 80, attempt, lowest); got != want {
			t.Errorf("attempt %d: delay %v, want %v", attempt, got, want)
		}
	}
	highest := func(n int64) int64 { return n - 1 }
	if got := Delay(10, 80, 100, highest); got != 80 {
		t.Errorf("capped delay at the top = %v, want 80", got)
	}
}

func TestDelayNeverOverflows(t *testing.T) {
	for attempt := range 70 {
		d := Delay(time.Hour, 1<<62, attempt, nil)
		if d < time.Hour/2 || d > 1<<62 {
			t.Fatalf("attempt %d: delay %v outside [30m, 2^62 ns]", attempt, d)
		}
	}
}
