package endpointer

import (
	"context"
	"io"
	"sync/atomic"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// entry is the endpoint of one instance address: the factory's result, the
// number of calls in flight through it, and whether it has been retired.
type entry struct {
	address  string
	ep       endpoint.Endpoint
	closer   io.Closer
	logger   *log.Logger       // the Endpointer's
	endpoint endpoint.Endpoint // e.call, made once so that picks do not allocate

	inflight atomic.Int32
	retired  atomic.Bool
	closed   atomic.Bool
	refs     int32 // routed members with this address; the writer's
}

func newEntry(address string, ep endpoint.Endpoint, closer io.Closer, logger *log.Logger) *entry {
	e := &entry{address: address, ep: ep, closer: closer, logger: logger}
	e.endpoint = e.call
	return e
}

// call invokes the endpoint and counts the call as in flight while it runs.
// The last call to return from a retired entry closes it.
func (e *entry) call(ctx context.Context, request any) (any, error) {
	e.inflight.Add(1)
	defer e.done()
	return e.ep(ctx, request)
}

func (e *entry) done() {
	if e.inflight.Add(-1) == 0 && e.retired.Load() {
		e.close()
	}
}

// retire marks the entry as no longer used by any instance and closes it
// now if no call is in flight, else when the last one returns.
func (e *entry) retire() {
	e.retired.Store(true)
	if e.inflight.Load() == 0 {
		e.close()
	}
}

// close closes the factory's io.Closer once.
func (e *entry) close() {
	if !e.closed.CompareAndSwap(false, true) || e.closer == nil {
		return
	}
	if err := e.closer.Close(); err != nil {
		level.Warn(*e.logger).Log("msg", "closing endpoint failed", "address", e.address, "err", err)
	}
}
