package etcdv3

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff yields capped exponential delays with jitter, so that many
// clients recovering from the same outage do not retry in lockstep and
// none retries in a tight loop.
type backoff struct {
	base, max time.Duration
	attempt   int
}

func newBackoff(base, max time.Duration) *backoff {
	if max < base {
		max = base
	}
	return &backoff{base: base, max: max}
}

// next returns the delay before the next attempt: uniformly random in
// [d/2, d], where d doubles per attempt up to max.
func (b *backoff) next() time.Duration {
	d := b.max
	if b.attempt < 30 {
		if e := b.base << b.attempt; e < b.max {
			d = e
		}
	}
	b.attempt++
	half := d / 2
	return half + rand.N(half+1)
}

func (b *backoff) reset() { b.attempt = 0 }

// sleep waits for the next delay; it returns false if ctx ends first.
func (b *backoff) sleep(ctx context.Context) bool {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
