package endpointer

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
// each entry (fails, until, ejections); picks read only entry.until.
type outliers struct {
	consecutive int32
	base        time.Duration
	maxPercent  int64
	isFailure   func(error) bool
	hook        func(Ejection) // nil: none
	logger      *log.Logger    // the Endpointer's
	// now is a monotonic clock in nanoseconds, > 0; tests replace it
	// before the first call.
	now func() int64

	// live is the number of routed addresses, kept by the writer.
	live atomic.Int64

	mu sync.Mutex
	// ejected holds the entries ejected and perhaps back already, or
	// retired; swept before each ejection.
	ejected []*entry
}

func newOutliers(c *config, logger *log.Logger) *outliers {
	epoch := time.Now()
	return &outliers{
		consecutive: int32(c.ejectAfter),
		base:        c.ejectionTime,
		maxPercent:  int64(c.maxEjectionPercent),
		isFailure:   c.ejectOn,
		hook:        c.ejectionHook,
		logger:      logger,
		now:         func() int64 { return int64(time.Since(epoch)) + 1 },
	}
}

// observe counts the outcome of a call through en: a success resets its
// consecutive failures, a failure adds one and ejects en at the threshold.
// A cancelled call tells nothing about the instance and counts for
// nothing; an error that the hook does not count as a failure is an
// answer, and resets the count like a success.
func (o *outliers) observe(ctx context.Context, en *entry, err error) {
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

// eject takes en out of picks unless it is out already, it is retired, or
// the share of ejected addresses would exceed the limit: then its count of
// failures stays, and the next failure tries again.
func (o *outliers) eject(en *entry, fails int32, err error) {
	o.mu.Lock()
	now := o.now()
	last := en.until.Load()
	if last > now || en.flags.Load()&retiredFlag != 0 {
		o.mu.Unlock()
		return
	}
	o.ejected = slices.DeleteFunc(o.ejected, func(x *entry) bool {
		return x.until.Load() <= now || x.flags.Load()&retiredFlag != 0
	})
	if int64(len(o.ejected)+1) > o.live.Load()*o.maxPercent/100 {
		o.mu.Unlock()
		return
	}
	count := en.ejections
	if last != 0 {
		// The last ejection ended at |last|: one less for every base time
		// in service since.
		count -= int32(min((now-max(last, -last))/int64(o.base), int64(count)))
	}
	count++
	en.ejections = count
	d := o.base * time.Duration(min(count, maxEjectionMultiplier))
	en.until.Store(now + int64(d))
	en.fails.Store(0)
	o.ejected = append(o.ejected, en)
	o.mu.Unlock()

	level.Warn(*o.logger).Log("msg", "instance ejected after consecutive failures", "address", en.address,
		"failures", fails, "ejections", count, "for", d, "err", err)
	if o.hook != nil {
		o.hook(Ejection{Address: en.address, Failures: int(fails), Count: int(count), Duration: d, Err: err})
	}
}
