package etcdv3

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// KeyValue is one key read from etcd.
type KeyValue struct {
	Key, Value  string
	ModRevision int64
	Lease       int64
}

// Snapshot is the content of a prefix at one store revision.
type Snapshot struct {
	Revision int64
	KVs      []KeyValue
}

// Snapshotter reads a prefix together with the revision of the read, so that
// a watch can start right after it with no gap. The Client returned by
// NewClient implements it.
type Snapshotter interface {
	Snapshot(ctx context.Context, prefix string) (Snapshot, error)
}

// EventType says whether a watched key was put or deleted.
type EventType int

// Event types.
const (
	EventPut EventType = iota + 1
	EventDelete
)

// WatchEvent is one change seen by a watch.
type WatchEvent struct {
	Type        EventType
	Key, Value  string
	ModRevision int64
}

// WatchResponse is one batch of changes from a watch, at store revision
// Revision. A response with Err is the last one on its channel.
type WatchResponse struct {
	Revision int64
	Events   []WatchEvent
	// Err is set when the watch failed. It wraps ErrCompacted when the
	// requested revision is compacted (CompactRevision tells the oldest
	// one left) and ErrUnreachable when etcd stopped answering.
	Err             error
	CompactRevision int64
}

var (
	// ErrCompacted reports that a watch asked for history etcd no longer
	// keeps; the watcher must read a fresh snapshot.
	ErrCompacted = rpctypes.ErrCompacted
	// ErrUnreachable reports that no etcd endpoint has answered for longer
	// than the dial timeout.
	ErrUnreachable = errors.New("etcd unreachable")
)

// RevisionWatcher is the fast path of Instancer and Mirror: a snapshot at a
// revision, then every change after it, applied by key. The Client returned
// by NewClient implements it; a Client without it is served through
// GetEntries and WatchPrefix.
type RevisionWatcher interface {
	Snapshotter
	// WatchFrom streams the changes under prefix from revision rev on,
	// until ctx ends or the watch fails; then the channel is closed.
	WatchFrom(ctx context.Context, prefix string, rev int64) <-chan WatchResponse
}

var (
	_ Snapshotter     = (*EtcdClient)(nil)
	_ RevisionWatcher = (*EtcdClient)(nil)
)

// Snapshot implements Snapshotter with one linearizable range read.
func (c *EtcdClient) Snapshot(ctx context.Context, prefix string) (Snapshot, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return Snapshot{}, fmt.Errorf("etcdv3: read prefix %q: %w", prefix, err)
	}
	resp, err := c.cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return Snapshot{}, fmt.Errorf("etcdv3: read prefix %q: %w", prefix, err)
	}
	snap := Snapshot{Revision: resp.Header.Revision, KVs: make([]KeyValue, len(resp.Kvs))}
	for i, kv := range resp.Kvs {
		snap.KVs[i] = KeyValue{Key: string(kv.Key), Value: string(kv.Value), ModRevision: kv.ModRevision, Lease: kv.Lease}
	}
	return snap, nil
}

// WatchFrom implements RevisionWatcher. The watch requires a leader, so a
// member cut off from its cluster fails the watch rather than serve stale
// data, and it fails with ErrUnreachable when the connection to etcd has
// been down for longer than the dial timeout.
func (c *EtcdClient) WatchFrom(ctx context.Context, prefix string, rev int64) <-chan WatchResponse {
	out := make(chan WatchResponse)
	go func() {
		defer close(out)
		last := c.watch(ctx, prefix, rev, func(r WatchResponse) { send(ctx, out, r) })
		if ctx.Err() == nil {
			send(ctx, out, last)
		}
	}()
	return out
}

// watch hands every response of one watch to apply, on the calling
// goroutine, until the watch fails or ctx ends; it returns the failure as a
// response with Err set. The Mirror calls it directly for this client,
// saving a goroutine hop per event; WatchFrom wraps it in a channel.
func (c *EtcdClient) watch(ctx context.Context, prefix string, rev int64, apply func(WatchResponse)) WatchResponse {
	if err := ValidatePrefix(prefix); err != nil {
		return WatchResponse{Err: fmt.Errorf("etcdv3: watch prefix %q: %w", prefix, err)}
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	// clientv3's Watch blocks until its gRPC stream is open, which takes
	// forever while etcd is unreachable; call it aside so that the outage
	// is still noticed and reported.
	opened := make(chan clientv3.WatchChan, 1)
	go func() { opened <- c.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev)) }()
	var wch clientv3.WatchChan
	defer func() {
		cancel()
		if wch == nil {
			wch = <-opened
		}
		for range wch { // let clientv3 close the watch before returning
		}
	}()
	for {
		up, changed := c.reach.state()
		if !up {
			return WatchResponse{Err: fmt.Errorf("etcdv3: watch prefix %q: %w", prefix, ErrUnreachable)}
		}
		if wch == nil {
			select {
			case wch = <-opened:
			case <-changed:
			case <-ctx.Done():
				return WatchResponse{Err: ctx.Err()}
			}
			continue
		}
		select {
		case wr, ok := <-wch:
			if !ok {
				if err := ctx.Err(); err != nil {
					return WatchResponse{Err: err}
				}
				return WatchResponse{Err: fmt.Errorf("etcdv3: watch prefix %q: closed by etcd", prefix)}
			}
			resp := convert(wr)
			if resp.Err != nil {
				resp.Err = fmt.Errorf("etcdv3: watch prefix %q from revision %d: %w", prefix, rev, resp.Err)
				return resp
			}
			apply(resp)
		case <-changed:
		case <-ctx.Done():
			return WatchResponse{Err: ctx.Err()}
		}
	}
}

func send(ctx context.Context, out chan<- WatchResponse, r WatchResponse) bool {
	select {
	case out <- r:
		return true
	case <-ctx.Done():
		return false
	}
}

func convert(wr clientv3.WatchResponse) WatchResponse {
	resp := WatchResponse{Revision: wr.Header.Revision, CompactRevision: wr.CompactRevision}
	if err := wr.Err(); err != nil {
		resp.Err = err
		return resp
	}
	resp.Events = make([]WatchEvent, len(wr.Events))
	for i, ev := range wr.Events {
		e := WatchEvent{Key: string(ev.Kv.Key), ModRevision: ev.Kv.ModRevision}
		if ev.Type == mvccpb.DELETE {
			e.Type = EventDelete
		} else {
			e.Type, e.Value = EventPut, string(ev.Kv.Value)
		}
		resp.Events[i] = e
	}
	return resp
}
