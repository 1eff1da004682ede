// Package backoff is etcdsd's one retry backoff: capped exponential delays
// with jitter, uniformly random in [d/2, d] where d doubles per attempt up
// to a maximum, so that many clients recovering from the same outage do not
// retry in lockstep and none retries in a tight loop.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Delay returns the delay before retry attempt (0 for the first retry):
// uniformly random in [d/2, d], where d = min(max, base·2^attempt). rnd
// returns a uniformly random value in [0, n); nil means math/rand/v2.
func Delay(base, max time.Duration, attempt int, rnd func(n int64) int64) time.Duration {
	if max < base {
		max = base
	}
	d := max
	if attempt >= 0 && attempt < 63 && base <= max>>attempt {
		d = base << attempt // cannot overflow: it is at most max
	}
	half := d / 2
	if rnd == nil {
		return half + rand.N(half+1)
	}
	return half + time.Duration(rnd(int64(half)+1))
}

// Backoff counts attempts and yields the delay before each retry. It is not
// safe for concurrent use: one loop owns it.
type Backoff struct {
	base, max time.Duration
	attempt   int
}

// New returns a Backoff from base up to max (max < base counts as base).
func New(base, max time.Duration) *Backoff {
	return &Backoff{base: base, max: max}
}

// Next returns the delay before the next attempt and counts the attempt.
func (b *Backoff) Next() time.Duration {
	d := Delay(b.base, b.max, b.attempt, nil)
	b.attempt++
	return d
}

// Reset starts again from base, after a success.
func (b *Backoff) Reset() { b.attempt = 0 }

// Sleep waits for the next delay; it returns false if ctx ends first.
func (b *Backoff) Sleep(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
