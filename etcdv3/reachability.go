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
// watcher needs to know, to tell its subscribers. The connection must stay
// out of READY for longer than grace before etcd counts as unreachable, so
// that a reconnect after a leader change or a dropped connection is no
// outage.
type reachability struct {
	cli   *clientv3.Client
	grace time.Duration

	mu      sync.Mutex
	up      bool
	changed chan struct{} // closed and replaced on every change of up
}

func newReachability(cli *clientv3.Client, grace time.Duration) *reachability {
	return &reachability{cli: cli, grace: grace, up: true, changed: make(chan struct{})}
}

// state returns whether etcd is reachable and a channel closed at the next
// change.
func (r *reachability) state() (bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.up, r.changed
}

func (r *reachability) set(up bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.up == up {
		return
	}
	r.up = up
	close(r.changed)
	r.changed = make(chan struct{})
}

// run follows the connection state until ctx ends.
func (r *reachability) run(ctx context.Context) {
	conn := r.cli.ActiveConnection()
	if conn == nil {
		return
	}
	var downSince time.Time
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
