package endpointer

import (
	"context"
	"errors"
	"math/bits"
	"time"

	"github.com/etcdsd/etcdsd/internal/backoff"
)

// call is the Endpointer's endpoint: pick, call, and on a retryable error
// pause and try another instance, all in the caller's goroutine.
func (e *Endpointer) call(ctx context.Context, request any) (any, error) {
	if e.cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.cfg.timeout)
		defer cancel()
	}
	var (
		errs []error
		last *entry
	)
	m := &e.cfg.metrics
	for attempt := 1; ; attempt++ {
		en, err := e.pick(ctx, last)
		if err != nil {
			m.countPickErr(err)
			return nil, e.fail(errs, err)
		}
		count(m.Picks)
		if attempt > 1 {
			count(m.Retries)
		}
		response, err := en.call(ctx, request)
		if err == nil {
			return response, nil
		}
		count(m.Failures)
		errs = append(errs, err)
		if attempt >= e.cfg.maxAttempts {
			return nil, e.fail(errs, nil)
		}
		if done := ctx.Err(); done != nil {
			if errors.Is(err, done) {
				done = nil
			}
			return nil, e.fail(errs, done)
		}
		if errors.Is(err, context.Canceled) || !e.cfg.retryable(err) {
			return nil, e.fail(errs, nil)
		}
		if err := e.pause(ctx, attempt); err != nil {
			return nil, e.fail(errs, err)
		}
		last = en
	}
}

// pause waits before the attempt after attempt, unless ctx ends first or
// its deadline leaves no time for another attempt.
func (e *Endpointer) pause(ctx context.Context, attempt int) error {
	d := e.backoff(attempt)
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= d {
		return context.DeadlineExceeded
	}
	return e.sleep(ctx, d)
}

// backoff is the pause after attempt: uniform in [0, d] (at least
// backoff.Floor) where d = min(max, base·2^(attempt-1)).
func (e *Endpointer) backoff(attempt int) time.Duration {
	return backoff.Delay(e.cfg.backoffBase, e.cfg.backoffMax, attempt-1, e.jitter)
}

// jitter returns a value in [0, n) from the Endpointer's generator, so that
// WithSeed makes the pauses reproducible.
func (e *Endpointer) jitter(n int64) int64 {
	hi, _ := bits.Mul64(e.rng.next(), uint64(n))
	return int64(hi)
}

// fail builds the error of a call that made the attempts in errs and then
// stopped, for the reason stop when that is not the last attempt's error.
func (e *Endpointer) fail(errs []error, stop error) error {
	switch {
	case len(errs) == 0:
		return stop
	case len(errs) == 1 && stop == nil:
		return errs[0]
	}
	return &RetryError{Errs: errs, Stop: stop}
}

// sleepContext waits for d or until ctx ends.
func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
