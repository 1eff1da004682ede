package endpointer

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-kit/kit/sd/lb"
)

var (
	// ErrNoEndpoints reports that the Endpointer has no instance at all. It is
	// go-kit's lb.ErrNoEndpoints, so existing checks keep working.
	ErrNoEndpoints = lb.ErrNoEndpoints

	// ErrNoMatch is wrapped by the error of a request whose selector
	// (WithVersion, WithMetadata) matches no instance; the error is a
	// *NoMatchError that names the selector and the versions available.
	ErrNoMatch = errors.New("no instance matches the selector")

	// ErrClosed reports a call on an Endpointer after Close.
	ErrClosed = errors.New("endpointer closed")

	// ErrInvalid is wrapped by the error of New for a bad argument or
	// option; the error names the bad value.
	ErrInvalid = errors.New("invalid argument")

	// ErrBadSelector is wrapped by the error of a request whose context
	// carries an unusable selector, such as an empty metadata key.
	ErrBadSelector = errors.New("bad selector")
)

// NoMatchError is the error of a request whose selector matches no
// instance. It wraps ErrNoMatch.
type NoMatchError struct {
	// Version is the wanted version, "" when the request did not ask for one.
	Version string
	// Metadata holds the wanted metadata pairs, sorted by key.
	Metadata [][2]string
	// Available lists the versions of the current instances, sorted; an
	// instance without a version is listed as "".
	Available []string
}

// Error names the wanted selector and the versions available.
func (e *NoMatchError) Error() string {
	var b strings.Builder
	b.WriteString("endpointer: no instance matches")
	if e.Version != "" {
		fmt.Fprintf(&b, " version %q", e.Version)
	}
	for _, kv := range e.Metadata {
		fmt.Fprintf(&b, " %s=%q", kv[0], kv[1])
	}
	b.WriteString(" (versions available: ")
	if len(e.Available) == 0 {
		b.WriteString("none")
	}
	for i, v := range e.Available {
		if i > 0 {
			b.WriteString(", ")
		}
		if v == "" {
			b.WriteString("(unversioned)")
		} else {
			fmt.Fprintf(&b, "%q", v)
		}
	}
	b.WriteString(")")
	return b.String()
}

// Unwrap returns ErrNoMatch.
func (e *NoMatchError) Unwrap() error { return ErrNoMatch }

// RetryError is the error of a call that was tried more than once, or
// stopped for a reason of its own, and failed. It unwraps to every
// attempt's error and to Stop, so errors.Is and errors.As see each of them.
type RetryError struct {
	// Errs holds the error of each attempt, in order.
	Errs []error
	// Stop is why no further attempt was made when that is not the last
	// attempt's error: the call's context ended (its deadline, the overall
	// timeout of WithRetry, or a cancellation), no time was left for the
	// backoff, or the next pick failed (no instance left). Nil when the
	// attempts ran out or the last error was not retryable.
	Stop error
}

// Error names the number of attempts, the last error, the earlier ones and
// why the call stopped.
func (e *RetryError) Error() string {
	var b strings.Builder
	switch len(e.Errs) {
	case 0:
		b.WriteString("endpointer: no attempt made")
	case 1:
		fmt.Fprintf(&b, "endpointer: 1 attempt failed: %v", e.Errs[0])
	default:
		fmt.Fprintf(&b, "endpointer: %d attempts failed: %v (previously: ", len(e.Errs), e.Errs[len(e.Errs)-1])
		for i, err := range e.Errs[:len(e.Errs)-1] {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(err.Error())
		}
		b.WriteString(")")
	}
	if e.Stop != nil {
		fmt.Fprintf(&b, "; stopped: %v", e.Stop)
	}
	return b.String()
}

// Unwrap returns the error of every attempt, then Stop.
func (e *RetryError) Unwrap() []error {
	if e.Stop == nil {
		return e.Errs
	}
	return append(slices.Clip(e.Errs), e.Stop)
}
