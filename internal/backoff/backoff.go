// Package backoff is etcdsd's one retry backoff: capped exponential delays
// with full jitter, uniformly random in [0, d] where d doubles per attempt
// up to a maximum, so that a fleet recovering from the same outage spreads
// its retries over the whole bound instead of hitting etcd at once. A floor
// of one millisecond keeps an unlucky draw from retrying at once, so none
// retries in a tight loop.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Floor is the shortest delay Delay returns (unless the bound itself is
// shorter): a draw near 0 would retry at once, and a loop whose attempts
// fail at once would spin.
const Floor = time.Millisecond

// Delay returns the delay before retry attempt (0 for the first retry):
// uniformly random in [0, d], where d = min(max, base·2^attempt), and at
// least min(Floor, d). Full jitter, rather than a share in [d/2, d], is
// what spreads a thousand processes that lost etcd at the same moment over
// the whole bound: with [d/2, d] they all come back within the upper half.
// rnd returns a uniformly random value in [0, n); nil means math/rand/v2.
func Delay(base, max time.Duration, attempt int, rnd func(n int64) int64) time.Duration {
	if max < base {
		max = base
	}
	d := max
	if attempt >= 0 && attempt < 63 && base <= max>>attempt {
		d = base << attempt // cannot overflow: it is at most max
	}
	floor := min(Floor, d)
	if d <= floor {
		return d
	}
	// Uniform in [floor, d]: the floor takes the place of the draws below
	// it, which are a share of at most Floor/d.
	span := int64(d - floor)
	if rnd == nil {
		return floor + time.Duration(rand.N(span+1))
	}
	return floor + time.Duration(rnd(span+1))
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
