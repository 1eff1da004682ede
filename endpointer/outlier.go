package endpointer

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/kit/metrics"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// maxEjectionMultiplier caps an ejection at this many base times (Envoy's
// default max_ejection_time is ten of its default base_ejection_time).
const maxEjectionMultiplier = 10

// An Ejection is what WithEjectionHook is told each time an instance is
// ejected.
type Ejection struct {
	// Address is the instance's address, as the factory received it.
	Address string
	// Failures is the number of consecutive failures that ejected it.
	Failures int
	// Count is the multiplier of the base ejection time: how many times the
	// address has been ejected, this one included, less one for every base
	// time it has since spent back in service.
	Count int
	// Duration is how long picks skip it: the base time times Count, at
	// most ten base times.
	Duration time.Duration
	// Err is the error of the last failure.
	Err error
}

// outliers ejects the instances whose calls fail several times in a row,
// as Envoy's consecutive-5xx outlier detection does, within a share of
// all the addresses the Endpointer routes to. The ejection state lives in
// each entry (fails, until, ejections); picks read only entry.until, and
// a timer brings the entry back, so that picks never read the clock.
type outliers struct {
	consecutive int32
	base        time.Duration
	maxPercent  int64
	isFailure   func(error) bool
	hook        func(Ejection)  // nil: none
	ejections   metrics.Counter // nil: none
	logger      *log.Logger     // the Endpointer's
	// now is a monotonic clock in nanoseconds, > 0, and after runs f
	// after d unless stopped; tests replace both before the first call.
	now   func() int64
	after func(d time.Duration, f func()) (stop func() bool)

	// live is the number of routed addresses, kept by the writer.
	live atomic.Int64

	mu sync.Mutex
	// ejected holds the entries ejected and perhaps back already, or
	// retired, with their timers; swept before each ejection.
	ejected []ejected
	closed  bool
}

type ejected struct {
	en   *entry
	stop func() bool
}

func newOutliers(c *config, logger *log.Logger) *outliers {
	epoch := time.Now()
	return &outliers{
		consecutive: int32(c.ejectAfter),
		base:        c.ejectionTime,
		maxPercent:  int64(c.maxEjectionPercent),
		isFailure:   c.ejectOn,
		hook:        c.ejectionHook,
		ejections:   c.metrics.Ejections,
		logger:      logger,
		now:         func() int64 { return int64(time.Since(epoch)) + 1 },
		after:       func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop },
	}
}

// close stops the timers; no ejection happens after it.
func (o *outliers) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	for _, x := range o.ejected {
		x.stop()
	}
	o.ejected = nil
}

// observe counts the outcome of a call through en: a success resets its
// consecutive failures, a failure adds one and ejects en at the threshold.
// A cancelled call tells nothing about the instance and counts for
// nothing; an error that the hook does not count as a failure is an
// answer, and resets the count like a success. Nothing counts while en is
// ejected: the calls that reach it then (in flight, or a request with no
// other candidate) would otherwise eject it again, for longer, at its
// first failure back in service.
func (o *outliers) observe(ctx context.Context, en *entry, err error) {
	if en.ejected() {
		return
	}
	if err == nil {
		if en.fails.Load() != 0 {
			en.fails.Store(0)
		}
		return
	}
	if errors.Is(err, context.Canceled) || errors.Is(ctx.Err(), context.Canceled) {
		return
	}
	if !o.isFailure(err) {
		if en.fails.Load() != 0 {
			en.fails.Store(0)
		}
		return
	}
	if n := en.fails.Add(1); n >= o.consecutive {
		o.eject(en, n, err)
	}
}

// eject takes en out of picks unless it is out already, it is retired, the
// Endpointer is closed, or the share of ejected addresses would exceed the
// limit: then its count of failures stays, and the next failure tries
// again.
func (o *outliers) eject(en *entry, fails int32, err error) {
	o.mu.Lock()
	last := en.until.Load()
	if last > 0 || o.closed || en.flags.Load()&retiredFlag != 0 {
		o.mu.Unlock()
		return
	}
	o.ejected = slices.DeleteFunc(o.ejected, func(x ejected) bool {
		if x.en.flags.Load()&retiredFlag != 0 {
			x.stop()
			return true
		}
		return x.en.until.Load() <= 0
	})
	if int64(len(o.ejected)+1) > o.live.Load()*o.maxPercent/100 {
		o.mu.Unlock()
		return
	}
	now := o.now()
	count := en.ejections
	if back := now + last; last < 0 && back > 0 {
		// The last ejection ended at -last: one less for every base time
		// in service since.
		count -= int32(min(back/int64(o.base), int64(count)))
	}
	count++
	en.ejections = count
	d := o.base * time.Duration(min(count, maxEjectionMultiplier))
	until := now + int64(d)
	en.until.Store(until)
	stop := o.after(d, func() {
		// The count starts over when en comes back, not when it leaves: a
		// failure observed as the ejection began may have counted after
		// it. Reset first, so that none counts between the two.
		en.fails.Store(0)
		en.until.CompareAndSwap(until, -until)
	})
	o.ejected = append(o.ejected, ejected{en: en, stop: stop})
	o.mu.Unlock()

	level.Warn(*o.logger).Log("msg", "instance ejected after consecutive failures", "address", en.address,
		"failures", fails, "ejections", count, "for", d, "err", err)
	if o.ejections != nil {
		o.ejections.Add(1)
	}
	if o.hook != nil {
		o.hook(Ejection{Address: en.address, Failures: int(fails), Count: int(count), Duration: d, Err: err})
	}
}
