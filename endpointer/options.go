package endpointer

import (
	"fmt"
	"time"

	"github.com/go-kit/kit/endpoint"
)

// Defaults of the options.
const (
	DefaultMaxAttempts = 3
	DefaultBackoffBase = 10 * time.Millisecond
	DefaultBackoffMax  = time.Second

	// DefaultEjectAfter, DefaultEjectionTime and DefaultMaxEjectionPercent
	// are those of WithEjection, Envoy's defaults but for the share (Envoy
	// ejects 10 %, or at least one instance).
	DefaultEjectAfter         = 5
	DefaultEjectionTime       = 30 * time.Second
	DefaultMaxEjectionPercent = 50
)

// Option configures an Endpointer. An option given a bad value makes New
// fail with an error naming it.
type Option func(*config) error

type config struct {
	strategy    Strategy
	subsetSize  int // 0: no subsetting
	clientID    string
	maxAttempts int
	timeout     time.Duration
	backoffBase time.Duration
	backoffMax  time.Duration
	retryable   func(error) bool
	seed        uint64
	seeded      bool
	middleware  endpoint.Middleware // nil: none

	ejectAfter         int // 0: no ejection
	ejectionTime       time.Duration
	maxEjectionPercent int
	ejectOn            func(error) bool
	ejectionHook       func(Ejection)

	metrics Metrics
}

func defaultConfig() config {
	return config{
		strategy:    RoundRobin,
		maxAttempts: DefaultMaxAttempts,
		backoffBase: DefaultBackoffBase,
		backoffMax:  DefaultBackoffMax,
		retryable:   func(error) bool { return true },

		ejectAfter:         DefaultEjectAfter,
		ejectionTime:       DefaultEjectionTime,
		maxEjectionPercent: DefaultMaxEjectionPercent,
		ejectOn:            func(error) bool { return true },
	}
}

// WithStrategy sets how instances are chosen. Default RoundRobin.
func WithStrategy(s Strategy) Option {
	return func(c *config) error {
		if !s.valid() {
			return fmt.Errorf("%w: unknown strategy %v", ErrInvalid, s)
		}
		c.strategy = s
		return nil
	}
}

// WithSubset limits the client to size instances of each version, chosen
// by rendezvous (highest random weight) hashing of clientID with each
// instance's ID (its address when the value has no ID). Each client keeps
// the same instances as long as they exist; when one leaves, only the
// clients that held it take one other instance, and the rest keep theirs.
// Give each client process a stable, distinct clientID (a host name, a pod
// name). Routing by version and metadata happens within the subset; the
// factory is called only for instances in it. Default: no subsetting.
func WithSubset(size int, clientID string) Option {
	return func(c *config) error {
		if size <= 0 {
			return fmt.Errorf("%w: subset size %d: must be > 0", ErrInvalid, size)
		}
		if clientID == "" {
			return fmt.Errorf("%w: subset client ID is empty", ErrInvalid)
		}
		c.subsetSize, c.clientID = size, clientID
		return nil
	}
}

// WithRetry sets how many times a call is tried in all (maxAttempts >= 1; 1
// means no retry) and an overall timeout for the call and its retries
// (timeout 0: only the caller's context bounds it). Default 3 attempts, no
// timeout of its own.
func WithRetry(maxAttempts int, timeout time.Duration) Option {
	return func(c *config) error {
		if maxAttempts < 1 {
			return fmt.Errorf("%w: retry max attempts %d: must be >= 1", ErrInvalid, maxAttempts)
		}
		if timeout < 0 {
			return fmt.Errorf("%w: retry timeout %v: must be >= 0", ErrInvalid, timeout)
		}
		c.maxAttempts, c.timeout = maxAttempts, timeout
		return nil
	}
}

// WithBackoff sets the pause between attempts: before retry n it is drawn
// uniformly from [0, d] (full jitter, at least 1 ms), where
// d = min(max, base·2^(n-1)). Default 10 ms to 1 s.
func WithBackoff(base, max time.Duration) Option {
	return func(c *config) error {
		if base <= 0 || max < base {
			return fmt.Errorf("%w: backoff base %v, max %v: need 0 < base <= max", ErrInvalid, base, max)
		}
		c.backoffBase, c.backoffMax = base, max
		return nil
	}
}

// WithRetryable sets the hook that decides whether an endpoint's error is
// worth another attempt. It is not asked when the call's context is done or
// the error is context.Canceled: those are never retried. Default: every
// other error is retried.
func WithRetryable(retryable func(error) bool) Option {
	return func(c *config) error {
		if retryable == nil {
			return fmt.Errorf("%w: retryable hook is nil", ErrInvalid)
		}
		c.retryable = retryable
		return nil
	}
}

// WithSeed makes the random choices (Random, LeastLoaded, Weighted, the
// round-robin starting points and the backoff jitter) reproducible, for
// tests. Default: a random seed.
func WithSeed(seed uint64) Option {
	return func(c *config) error {
		c.seed, c.seeded = seed, true
		return nil
	}
}

// WithEjection sets passive outlier ejection, which is on by default: an
// instance whose endpoint fails consecutive times in a row (see
// WithEjectOn) is skipped by picks for baseTime times the number of times
// it has been ejected, at most ten base times; every base time it then
// spends back in service takes one off that number. At most maxPercent of
// the addresses the Endpointer routes to (within the subset, if any) are
// ejected at once, rounded down (so the only instance is never ejected
// below 100 %).
// When every candidate of a request is ejected, the pick ignores ejection.
// A success resets the count of failures; so does an ejection, and the
// calls that reach an ejected instance count for nothing. Default 5
// failures, 30 s, 50 %.
func WithEjection(consecutive int, baseTime time.Duration, maxPercent int) Option {
	return func(c *config) error {
		if consecutive < 1 {
			return fmt.Errorf("%w: ejection after %d failures: must be >= 1", ErrInvalid, consecutive)
		}
		if baseTime <= 0 || baseTime > time.Duration(1<<62)/maxEjectionMultiplier {
			return fmt.Errorf("%w: ejection time %v: must be > 0 and at most %v", ErrInvalid, baseTime, time.Duration(1<<62)/maxEjectionMultiplier)
		}
		if maxPercent < 1 || maxPercent > 100 {
			return fmt.Errorf("%w: max ejection percent %d: must be within [1, 100]", ErrInvalid, maxPercent)
		}
		c.ejectAfter, c.ejectionTime, c.maxEjectionPercent = consecutive, baseTime, maxPercent
		return nil
	}
}

// WithoutEjection turns passive outlier ejection off: failing instances
// are picked as often as the others until they leave the Instancer.
func WithoutEjection() Option {
	return func(c *config) error {
		c.ejectAfter = 0
		return nil
	}
}

// WithEjectOn sets the hook that decides whether an error of an
// instance's endpoint is a failure of the instance, for ejection. It is not
// asked when the error is context.Canceled or the call's context was
// cancelled: such a call counts for nothing. An error it rejects is an
// answer from a live instance and resets the count, as a success does.
// Default: every other error is a failure, a deadline included (an
// instance that does not answer in time is the outlier to eject); reject,
// for example, the errors your endpoint decodes from a well-formed answer.
func WithEjectOn(isFailure func(error) bool) Option {
	return func(c *config) error {
		if isFailure == nil {
			return fmt.Errorf("%w: eject-on hook is nil", ErrInvalid)
		}
		c.ejectOn = isFailure
		return nil
	}
}

// WithEjectionHook sets a function told of each ejection, in the goroutine
// of the call whose failure caused it, so that it must return quickly
// (count it in a metric). Ejections are also logged at warn level.
// Default: none.
func WithEjectionHook(hook func(Ejection)) Option {
	return func(c *config) error {
		if hook == nil {
			return fmt.Errorf("%w: ejection hook is nil", ErrInvalid)
		}
		c.ejectionHook = hook
		return nil
	}
}

// WithInstanceMiddleware wraps the endpoint of each instance address with
// mw once, when the factory makes it, so that per-instance state such as
// a circuit breaker (go-kit's circuitbreaker.Gobreaker) lives as long as
// the endpoint. Several are applied in the order given, the first
// outermost, as endpoint.Chain does. The wrapped endpoint's errors are
// what retries and ejection see. Default: none.
func WithInstanceMiddleware(mw endpoint.Middleware) Option {
	return func(c *config) error {
		if mw == nil {
			return fmt.Errorf("%w: instance middleware is nil", ErrInvalid)
		}
		if outer := c.middleware; outer != nil {
			c.middleware = func(next endpoint.Endpoint) endpoint.Endpoint { return outer(mw(next)) }
		} else {
			c.middleware = mw
		}
		return nil
	}
}
