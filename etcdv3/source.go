package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-kit/log/level"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
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
	// cluster is the ID of the etcd cluster the Feed's content comes
	// from: the last snapshot's, or the first watch response's without
	// one.
	cluster atomic.Uint64
	// proxy says the watch stream is served by etcd's grpc-proxy, which
	// answers no progress requests (and logs an error for each).
	proxy atomic.Bool
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
	s.cluster.Store(resp.Header.ClusterId)
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
// then with backoff; after an outage, a store revision (a linearizable
// transaction counting one key) equal to the last one handed over. etcd's grpc-proxy
// forwards no progress requests: without proof after the request timeout
// of silence (each response of a catch-up starts the wait again), the
// source says it has caught up, and logs it. Once the proxy has given
// itself away (its own answer to a creation bears no cluster ID), the
// source sends it no progress requests.
//
// A store revision below the last one handed over, or a cluster ID other
// than the Feed's, in any of those answers or in a response's header,
// says that etcd lost the history the Feed was read from (restored from a
// backup, wiped, or another cluster behind the endpoint): a watch resumed
// there waits for the revision and misses everything before. The watch
// then fails with pipeline.ErrHistoryLost, and the Mirror reads a fresh
// snapshot. This also holds when clientv3 resumed the watch by itself
// after a reconnect too short to report: its next response, or the
// minutely progress notification, tells.
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
			if wch != nil {
				h, err := s.storeHeader(ctx)
				if err == nil {
					if err := s.historyLost(ctx, h, last, true); err != nil {
						return err
					}
				}
				if err == nil && h.Revision == last {
					apply(pipeline.WatchResponse{Rev: last, Current: true})
				} else {
					cu.start()
				}
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
				// the watcher: the one before the first watched, nothing
				// was pending; below it, the history is lost. etcd's
				// grpc-proxy, which may answer for a watch it shares,
				// says the revision asked for, and no cluster.
				if wr.Header.GetClusterId() == 0 {
					s.proxy.Store(true)
				}
				if err := s.historyLost(ctx, wr.Header, last, true); err != nil {
					return err
				}
				if wr.Header.Revision == last {
					apply(pipeline.WatchResponse{Rev: last, Current: true})
				} else if !down {
					cu.start()
				}
			case len(wr.Events) > 0:
				if err := s.historyLost(ctx, wr.Header, last, false); err != nil {
					return err
				}
				last = wr.Events[len(wr.Events)-1].Kv.ModRevision
				current := last == wr.Header.Revision
				if current {
					cu.stop()
				} else {
					cu.progressed()
				}
				apply(pipeline.WatchResponse{Rev: last, Changes: convert(wr.Events), Current: current})
			case wr.IsProgressNotify():
				if err := s.historyLost(ctx, wr.Header, last, true); err != nil {
					return err
				}
				cu.stop()
				last = max(last, wr.Header.Revision)
				apply(pipeline.WatchResponse{Rev: last, Current: true})
			}
		case <-cu.ask():
			cu.request()
		case <-cu.deadline():
			cu.stop()
			level.Warn(c.logger).Log("msg", "watch open without proof that it caught up (a grpc-proxy forwards no progress requests): taking it as caught up", "prefix", prefix, "rev", last, "proxy", s.proxy.Load())
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

// storeHeader reads etcd's store revision and cluster ID with a
// transaction counting one key (the prefix itself: no range over the
// prefix, so it costs etcd next to nothing). The count makes it
// linearizable (an empty transaction is served from the member's own
// state): the revision is the cluster's, not that of a member lagging
// behind.
func (s *etcdSource) storeHeader(ctx context.Context) (*pb.ResponseHeader, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	ctx, unbound := s.c.bound(ctx)
	defer unbound()
	resp, err := s.c.cli.Txn(ctx).Then(clientv3.OpGet(s.prefix, clientv3.WithCountOnly())).Commit()
	if err != nil {
		return nil, fmt.Errorf("etcdv3: read store revision: %w", callError(ctx, err))
	}
	return resp.Header, nil
}

// historyLost returns an error wrapping pipeline.ErrHistoryLost when h,
// the header of an etcd response, comes from another cluster than the
// Feed's content, or, with byRev, from a store whose revision is below
// last, the last one handed over: then etcd no longer holds the history
// the watch resumes. A member lagging behind the one the Feed was read
// through shows a lower revision too, for a moment: a linearizable read
// tells them apart (if it fails, the history counts as lost, which costs a
// snapshot read). A header without a cluster (etcd's grpc-proxy's own
// answer to a creation) tells nothing.
func (s *etcdSource) historyLost(ctx context.Context, h *pb.ResponseHeader, last int64, byRev bool) error {
	if h.GetClusterId() == 0 {
		return nil
	}
	s.cluster.CompareAndSwap(0, h.ClusterId)
	was := s.cluster.Load()
	if h.ClusterId != was {
		return fmt.Errorf("etcdv3: watch prefix %q: etcd cluster %x, not %x the instances were read from: %w", s.prefix, h.ClusterId, was, pipeline.ErrHistoryLost)
	}
	if !byRev || h.Revision >= last {
		return nil
	}
	store, err := s.storeHeader(ctx)
	if err == nil && store.ClusterId == was && store.Revision >= last {
		return nil
	}
	return fmt.Errorf("etcdv3: watch prefix %q: etcd store at revision %d, below %d the instances were read at: %w", s.prefix, h.Revision, last, pipeline.ErrHistoryLost)
}

// catchUp asks etcd for the progress notification that proves a watch has
// caught up: at once, then with backoff from 100 ms to 1 s, until the
// proof comes or the request timeout passes without a response. Owned by
// one Watch.
type catchUp struct {
	src   *etcdSource
	ctx   context.Context // the watch's: its metadata picks the watch's stream
	b     *backoff.Backoff
	next  *time.Timer // the next request
	limit *time.Timer // when to stop waiting for a proof
}

func (cu *catchUp) start() {
	cu.arm()
	cu.request()
}

// progressed starts the wait again after a response of a watch that is
// still catching up: etcd sends one about every 100 ms until it has, so
// only a request timeout of silence counts as caught up. etcd drops the
// progress requests of a watch that is behind: the next is asked soon.
func (cu *catchUp) progressed() {
	if cu.limit == nil {
		return
	}
	cu.arm()
	cu.next = time.NewTimer(cu.b.Next())
}

func (cu *catchUp) arm() {
	cu.stop()
	cu.b = backoff.New(100*time.Millisecond, time.Second)
	cu.limit = time.NewTimer(cu.src.timeout)
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

// progress asks etcd for a progress notification on the watch's stream,
// unless a grpc-proxy serves it. clientv3 hands the request to the
// stream's goroutine, which takes it at once unless the stream is
// reconnecting: then it is dropped after a moment, and asked again later.
func (cu *catchUp) progress() {
	if cu.src.proxy.Load() {
		return
	}
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
