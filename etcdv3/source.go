package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-kit/log/level"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/etcdsd/etcdsd/internal/backoff"
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
		return &etcdSource{c: ec, prefix: prefix, timeout: ec.opts.RequestTimeout, stream: streams.Add(1)}
	}
	return pipeline.NewEntriesSource(c, prefix)
}

// etcdSource reads a prefix at a revision and watches it from the next one.
type etcdSource struct {
	c       *EtcdClient
	prefix  string
	timeout time.Duration
	stream  uint64 // names the source's gRPC watch stream
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

// progressEvery is how often a watch asks etcd for a progress
// notification, so that the revision of a quiet prefix follows the store's:
// a watch resumed after an outage then starts from a recent revision,
// which compaction has not reached yet (kube-apiserver, say, compacts
// every 5 minutes), instead of finding it compacted and reading the whole
// prefix again. etcd's own notifications, which the watch asks for too,
// come every 10 minutes only. One request per interval on the watch's
// stream, which etcd answers by looking at that stream's one watcher.
const progressEvery = time.Minute

// streams numbers the sources, to give each its own gRPC watch stream.
var streams atomic.Uint64

// Watch implements pipeline.Source. The watch requires a leader, so a
// member cut off from its cluster ends the watch rather than serve stale
// data. While etcd is unreachable (the connection out of READY for longer
// than the dial timeout) the watch stays open and apply is told once;
// clientv3 resumes the watch from the next revision once the connection is
// back. Cancelling it instead would leave a watcher behind in etcd:
// clientv3 sends the create request of a watch cancelled while its stream
// reconnects, and forgets it, so etcd keeps that watcher until an event or
// a progress notification for it reaches the client.
//
// After the watch opens, and after an outage, the source finds out when
// the watch has caught up (WatchResponse.Current): etcd's answer to the
// creation says nothing was pending; a response whose last event is the
// store's last revision; a progress notification, which etcd sends only to
// a watcher that has caught up, asked for with RequestProgress at once and
// then with backoff; after an outage, a store revision (an empty
// transaction) no newer than the last one handed over. etcd's grpc-proxy
// forwards no progress requests: without proof within the request timeout
// of the watch being open, the source says it has caught up, and logs it.
func (s *etcdSource) Watch(ctx context.Context, rev int64, apply func(pipeline.WatchResponse)) error {
	c, prefix := s.c, s.prefix
	// clientv3 picks a watch's gRPC stream by the context's metadata. A
	// stream of its own keeps etcd's answers to this source's progress
	// requests to its own watcher: etcd broadcasts a requested
	// notification to every watcher of the stream, and one created just
	// after the request was served could take it for its own progress
	// while it is still catching up, and skip events.
	streamCtx := metadata.AppendToOutgoingContext(clientv3.WithRequireLeader(ctx), "etcdsd-watch-stream", strconv.FormatUint(s.stream, 10))
	wctx, cancel := context.WithCancel(streamCtx)
	// clientv3's Watch blocks until its gRPC stream is open, which takes
	// forever while etcd is unreachable; call it aside so that the outage
	// is still noticed and reported.
	opened := make(chan clientv3.WatchChan, 1)
	go func() {
		opened <- c.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithProgressNotify(), clientv3.WithCreatedNotify())
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
	last := rev - 1 // every change through last has been handed over
	down := false   // the outage has been reported
	cu := catchUp{src: s, ctx: wctx}
	defer cu.stop()
	refresh := time.NewTicker(progressEvery)
	defer refresh.Stop()
	for {
		up, changed := c.reach.state()
		switch {
		case !up && !down:
			down = true
			cu.stop()
			apply(pipeline.WatchResponse{Err: fmt.Errorf("etcdv3: watch prefix %q: %w", prefix, ErrUnreachable)})
		case up && down:
			down = false
			if wch != nil && s.storeWithin(ctx, last) {
				apply(pipeline.WatchResponse{Rev: last, Current: true})
			} else if wch != nil {
				cu.start()
			}
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
			case wr.Created:
				// The header is the store's revision when etcd created
				// the watcher: below the first one watched, nothing was
				// pending. etcd's grpc-proxy, which may answer for a
				// watch it shares, says 0 or the revision asked for.
				if h := wr.Header.Revision; h > 0 && h < rev {
					apply(pipeline.WatchResponse{Rev: last, Current: true})
				} else if !down {
					cu.start()
				}
			case len(wr.Events) > 0:
				last = wr.Events[len(wr.Events)-1].Kv.ModRevision
				current := last == wr.Header.Revision
				if current {
					cu.stop()
				}
				apply(pipeline.WatchResponse{Rev: last, Changes: convert(wr.Events), Current: current})
			case wr.IsProgressNotify():
				cu.stop()
				last = max(last, wr.Header.Revision)
				apply(pipeline.WatchResponse{Rev: last, Current: true})
			}
		case <-cu.ask():
			cu.request()
		case <-cu.deadline():
			cu.stop()
			level.Warn(c.logger).Log("msg", "watch open without proof that it caught up (a grpc-proxy forwards no progress requests): taking it as caught up", "prefix", prefix, "rev", last)
			apply(pipeline.WatchResponse{Rev: last, Current: true})
		case <-refresh.C:
			if !down {
				cu.progress()
			}
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// storeWithin reports whether etcd's store revision is at most rev, read
// with an empty transaction (no range read, so it costs etcd next to
// nothing): then nothing after rev is pending for a watch.
func (s *etcdSource) storeWithin(ctx context.Context, rev int64) bool {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ctx, unbound := s.c.bound(ctx)
	defer unbound()
	resp, err := s.c.cli.Txn(ctx).Commit()
	return err == nil && resp.Header.Revision <= rev
}

// catchUp asks etcd for the progress notification that proves a watch has
// caught up: at once, then with backoff from 100 ms to 1 s, until the
// proof comes or the request timeout passes. Owned by one Watch.
type catchUp struct {
	src   *etcdSource
	ctx   context.Context // the watch's: its metadata picks the watch's stream
	b     *backoff.Backoff
	next  *time.Timer // the next request
	limit *time.Timer // when to stop waiting for a proof
}

func (cu *catchUp) start() {
	cu.stop()
	cu.b = backoff.New(100*time.Millisecond, time.Second)
	cu.limit = time.NewTimer(cu.src.timeout)
	cu.request()
}

func (cu *catchUp) stop() {
	for _, t := range []*time.Timer{cu.next, cu.limit} {
		if t != nil {
			t.Stop()
		}
	}
	cu.next, cu.limit = nil, nil
}

// request asks for a progress notification and schedules the next ask.
func (cu *catchUp) request() {
	cu.progress()
	cu.next = time.NewTimer(cu.b.Next())
}

// progress asks etcd for a progress notification on the watch's stream.
// clientv3 hands the request to the stream's goroutine, which takes it at
// once unless the stream is reconnecting: then it is dropped after a
// moment, and asked again later.
func (cu *catchUp) progress() {
	ctx, cancel := context.WithTimeout(cu.ctx, 100*time.Millisecond)
	defer cancel()
	_ = cu.src.c.cli.RequestProgress(ctx)
}

func (cu *catchUp) ask() <-chan time.Time      { return timerC(cu.next) }
func (cu *catchUp) deadline() <-chan time.Time { return timerC(cu.limit) }

// timerC is t's channel, nil (never ready) for no timer.
func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
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
