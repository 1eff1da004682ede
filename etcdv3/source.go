package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// ErrUnreachable reports that no etcd endpoint has answered for longer than
// the dial timeout. Instancer subscribers see it, wrapped, in sd.Event.Err.
var ErrUnreachable = errors.New("etcd unreachable")

// source returns the pipeline source for prefix: the revision-aware watch
// of the client NewClient returns, or, for any other Client (a go-kit style
// fake), reads through GetEntries and WatchPrefix.
func source(c Client, prefix string) pipeline.Source {
	if ec, ok := c.(*EtcdClient); ok {
		return &etcdSource{c: ec, prefix: prefix, timeout: ec.opts.RequestTimeout}
	}
	return pipeline.NewEntriesSource(c, prefix)
}

// etcdSource reads a prefix at a revision and watches it from the next one.
type etcdSource struct {
	c       *EtcdClient
	prefix  string
	timeout time.Duration
}

// Snapshot implements pipeline.Source with one linearizable range read,
// bounded by the request timeout, and by the dial timeout while etcd is
// unreachable.
func (s *etcdSource) Snapshot(ctx context.Context) (int64, []pipeline.KV, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ctx, unbound := s.c.bound(ctx)
	defer unbound()
	resp, err := s.c.cli.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, nil, fmt.Errorf("etcdv3: read prefix %q: %w", s.prefix, callError(ctx, err))
	}
	kvs := make([]pipeline.KV, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		kvs[i] = pipeline.KV{Key: string(kv.Key), Value: string(kv.Value), ModRev: kv.ModRevision}
	}
	return resp.Header.Revision, kvs, nil
}

// Watch implements pipeline.Source. The watch requires a leader, so a
// member cut off from its cluster fails the watch rather than serve stale
// data, and it fails with ErrUnreachable when the connection to etcd has
// been down for longer than the dial timeout.
func (s *etcdSource) Watch(ctx context.Context, rev int64, apply func(int64, []pipeline.Change)) error {
	c, prefix := s.c, s.prefix
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	// clientv3's Watch blocks until its gRPC stream is open, which takes
	// forever while etcd is unreachable; call it aside so that the outage
	// is still noticed and reported.
	opened := make(chan clientv3.WatchChan, 1)
	go func() {
		opened <- c.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithProgressNotify())
	}()
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
			return fmt.Errorf("etcdv3: watch prefix %q: %w", prefix, ErrUnreachable)
		}
		if wch == nil {
			select {
			case wch = <-opened:
			case <-changed:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		select {
		case wr, ok := <-wch:
			if !ok {
				if err := ctx.Err(); err != nil {
					return err
				}
				return fmt.Errorf("etcdv3: watch prefix %q: closed by etcd", prefix)
			}
			if err := wr.Err(); err != nil {
				return fmt.Errorf("etcdv3: watch prefix %q from revision %d: %w", prefix, rev, err)
			}
			// A watcher behind the store gets its missed events in
			// responses of at most 1,000 revisions, each stamped with
			// the store's current revision: only the events' own
			// revisions say what has been delivered. A progress
			// notification, sent only to a watcher that has caught up,
			// vouches for its header revision.
			switch {
			case len(wr.Events) > 0:
				apply(wr.Events[len(wr.Events)-1].Kv.ModRevision, convert(wr.Events))
			case wr.IsProgressNotify():
				apply(wr.Header.Revision, nil)
			}
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func convert(events []*clientv3.Event) []pipeline.Change {
	out := make([]pipeline.Change, len(events))
	for i, ev := range events {
		ch := pipeline.Change{Op: pipeline.Put, Key: string(ev.Kv.Key), Rev: ev.Kv.ModRevision}
		if ev.Type == mvccpb.DELETE {
			ch.Op = pipeline.Delete
		} else {
			ch.Value = string(ev.Kv.Value)
		}
		out[i] = ch
	}
	return out
}

func init() {
	pipeline.SourceFor = func(client any, prefix string) pipeline.Source { return source(client.(Client), prefix) }
}
