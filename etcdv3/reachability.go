package etcdv3

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/connectivity"
)

// reachability tells whether etcd is reachable, from the state of the gRPC
// connection. clientv3 hides a dead server behind endless silent retries; a
// watcher needs to know, to tell its subscribers, and a call needs to know,
// to fail instead of waiting. The connection must stay out of READY for
// longer than grace before etcd counts as unreachable, so that a reconnect
// after a leader change or a dropped connection is no outage. A client
// starts out reachable, so a call made before the first connection waits
// for it for at most grace.
type reachability struct {
	cli   *clientv3.Client
	grace time.Duration
	// why names the endpoints when etcd turns unreachable (and a TLS
	// problem, if that is the cause); it wraps ErrUnreachable.
	why func() error

	mu       sync.Mutex
	up       bool
	changed  chan struct{}           // closed and replaced on every change of up
	upCtx    context.Context         // ends, with why() as cause, when up turns false
	cancelUp context.CancelCauseFunc // ends upCtx
}

func newReachability(cli *clientv3.Client, grace time.Duration, why func() error) *reachability {
	r := &reachability{cli: cli, grace: grace, why: why, up: true, changed: make(chan struct{})}
	r.upCtx, r.cancelUp = context.WithCancelCause(context.Background())
	return r
}

// state returns whether etcd is reachable and a channel closed at the next
// change.
func (r *reachability) state() (bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up, r.changed
}

// bound returns ctx, also ended when etcd is, or turns, unreachable; its
// cause (context.Cause) then names the endpoints and wraps ErrUnreachable.
// So no call waits on etcd for longer than grace after an outage starts.
func (r *reachability) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	r.mu.Lock()
	upCtx := r.upCtx
	r.mu.Unlock()
	ctx, cancel := context.WithCancelCause(ctx)
	if upCtx.Err() != nil {
		cancel(context.Cause(upCtx))
		return ctx, func() { cancel(context.Canceled) }
	}
	stop := context.AfterFunc(upCtx, func() { cancel(context.Cause(upCtx)) })
	return ctx, func() {
		stop()
		cancel(context.Canceled)
	}
}

func (r *reachability) set(up bool) {
	if was, _ := r.state(); was == up {
		return
	}
	var why error
	if !up {
		why = r.why() // may dial, to name a TLS problem: not under the lock
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.up == up {
		return
	}
	r.up = up
	if up {
		r.upCtx, r.cancelUp = context.WithCancelCause(context.Background())
	} else {
		r.cancelUp(why)
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// run follows the connection state until ctx ends.
func (r *reachability) run(ctx context.Context) {
	defer r.cancelUpOnExit()
	conn := r.cli.ActiveConnection()
	if conn == nil {
		return
	}
	downSince := time.Now() // a new client counts as connecting
	for ctx.Err() == nil {
		st := conn.GetState()
		if st == connectivity.Ready {
			downSince = time.Time{}
			r.set(true)
			conn.WaitForStateChange(ctx, st)
			continue
		}
		if st == connectivity.Idle {
			// No RPC in flight: make gRPC connect, so that an outage is
			// noticed while a watcher waits for events.
			conn.Connect()
		}
		if downSince.IsZero() {
			downSince = time.Now()
		}
		left := r.grace - time.Since(downSince)
		if left <= 0 {
			r.set(false)
			conn.WaitForStateChange(ctx, st)
			continue
		}
		waitCtx, cancel := context.WithTimeout(ctx, left)
		conn.WaitForStateChange(waitCtx, st)
		cancel()
	}
}

// cancelUpOnExit releases the current upCtx's resources when the client
// closes; calls are ended by the client's own context then.
func (r *reachability) cancelUpOnExit() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancelUp(context.Canceled)
}
