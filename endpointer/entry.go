package endpointer

import (
	"context"
	"io"
	"sync/atomic"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// entry is the endpoint of one instance address: the factory's result
// (with the instance middleware), the number of calls in flight through
// it, whether it has been retired, and its ejection state. It is 80 bytes,
// plus the closing state when the factory gave an io.Closer: the
// Endpointer keeps one per address.
type entry struct {
	// What picks read first, on one cache line.
	endpoint endpoint.Endpoint // e.call, made once so that picks do not allocate
	// until is when the entry's ejection ends, on od's clock, while it is
	// ejected; -until once it is back; 0 if it was never ejected.
	until    atomic.Int64
	inflight atomic.Int32
	flags    atomic.Uint32 // retired, closed

	ep      endpoint.Endpoint
	closing *closing  // nil when the factory gave no io.Closer
	od      *outliers // nil without ejection
	address string
	refs    int32 // routed members with this address; the writer's
	// fails counts the calls that failed in a row.
	fails     atomic.Int32
	ejections int32 // guarded by od.mu
}

// closing is what closing an entry's io.Closer needs.
type closing struct {
	closer io.Closer
	logger *log.Logger // the Endpointer's
}

const (
	retiredFlag = 1 << iota
	closedFlag
)

func newEntry(address string, ep endpoint.Endpoint, closer io.Closer, od *outliers, logger *log.Logger) *entry {
	e := &entry{ep: ep, od: od, address: address}
	if closer != nil {
		e.closing = &closing{closer: closer, logger: logger}
	}
	e.endpoint = e.call
	return e
}

// call invokes the endpoint, counts the call as in flight while it runs
// and its outcome for ejection. The last call to return from a retired
// entry closes it.
func (e *entry) call(ctx context.Context, request any) (any, error) {
	e.inflight.Add(1)
	defer e.done()
	response, err := e.ep(ctx, request)
	if e.od != nil {
		e.od.observe(ctx, e, err)
	}
	return response, err
}

// ejected reports whether picks skip the entry.
func (e *entry) ejected() bool { return e.until.Load() > 0 }

func (e *entry) done() {
	if e.inflight.Add(-1) == 0 && e.flags.Load()&retiredFlag != 0 {
		e.close()
	}
}

// retire marks the entry as no longer used by any instance and closes it
// now if no call is in flight, else when the last one returns.
func (e *entry) retire() {
	e.flags.Or(retiredFlag)
	if e.inflight.Load() == 0 {
		e.close()
	}
}

// isClosed reports whether close has run.
func (e *entry) isClosed() bool { return e.flags.Load()&closedFlag != 0 }

// close closes the factory's io.Closer once.
func (e *entry) close() {
	if e.flags.Or(closedFlag)&closedFlag != 0 || e.closing == nil {
		return
	}
	c := e.closing
	if err := c.closer.Close(); err != nil {
		level.Warn(*c.logger).Log("msg", "closing endpoint failed", "address", e.address, "err", err)
	}
}
