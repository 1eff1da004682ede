package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcdsd/etcdsd/internal/backoff"
)

// ErrCompacted is wrapped by a Source's watch error when the revision it was
// asked to watch from is compacted; the Mirror then reads a fresh snapshot
// without reporting an outage.
var ErrCompacted = rpctypes.ErrCompacted

// ErrHistoryLost is wrapped by a Source's watch error when etcd no longer
// holds the history the Feed was read from: its store is at a lower
// revision than the Feed's (restored from a backup, or its data lost), or
// it is another cluster. A watch from the Feed's revision would wait there
// and miss what changed; the Mirror reads a fresh snapshot instead, as
// after compaction.
var ErrHistoryLost = errors.New("etcd history lost")

// Source is where a Mirror reads a prefix from.
type Source interface {
	// Snapshot reads every key under the prefix and the store revision of
	// the read.
	Snapshot(ctx context.Context) (rev int64, kvs []KV, err error)
	// Watch hands apply every change after rev, one watch response at a
	// time, on the calling goroutine, until the watch fails (it returns
	// why) or ctx ends. The changes need no Instance. While etcd cannot
	// be reached the watch may stay open, to go on by itself from where
	// it was once etcd answers: it then hands apply a response with Err,
	// once per outage.
	Watch(ctx context.Context, rev int64, apply func(WatchResponse)) error
}

// WatchResponse is what a Source's watch hands over at a time.
type WatchResponse struct {
	// Rev is the revision through which every change has been handed
	// over: the last change's own revision, or one etcd vouches for with
	// nothing pending (a progress notification). It is never a response
	// header's revision, which is the store's and runs ahead of a watch
	// that is catching up.
	Rev     int64
	Changes []Change
	// Current says the watch has caught up: when etcd sent the response,
	// nothing after Rev was pending for it, so the Feed holds the true
	// state. A Mirror recovering from an outage clears the error only
	// then. A source that cannot learn it (etcd's grpc-proxy does not
	// forward progress requests) says so once it has waited a bounded time
	// with the watch open.
	Current bool
	// Err, set alone, says that etcd cannot be reached and the watch stays
	// open, to go on once etcd answers.
	Err error
}

// SourceFor returns the Source that reads prefix through an etcdv3.Client
// (the revision-aware watch of the real client, GetEntries and WatchPrefix
// of any other). Package etcdv3 sets it, so that packages built on etcdv3
// (catalog, grpcsd) start Mirrors without etcdv3 exporting its plumbing.
var SourceFor func(client any, prefix string) Source

// Default bounds of the backoff between attempts to read etcd again.
const (
	DefaultMinBackoff = 50 * time.Millisecond
	DefaultMaxBackoff = 2 * time.Second
)

// Mirror keeps a Feed equal to a prefix in etcd: it reads a snapshot at
// revision R, watches from R+1 and applies each response as it comes.
// After an outage or a broken watch it resumes the watch from the Feed's
// revision, with backoff; only when etcd answers that the revision is
// compacted, or that it no longer holds the history (ErrHistoryLost), does
// it read a fresh snapshot and apply the net difference.
type Mirror struct {
	src    Source
	feed   *Feed
	logger log.Logger
	b      *backoff.Backoff
	filled bool // the Feed has had a snapshot; owned by Start, then by run

	cancel context.CancelFunc
	done   chan struct{}
}

// Start reads src into feed, within ctx, and then follows it in a goroutine
// until Stop. minBackoff and maxBackoff bound the backoff between attempts
// while etcd cannot be read (0: the defaults). It fails when the first read
// fails.
func Start(ctx context.Context, src Source, feed *Feed, logger log.Logger, minBackoff, maxBackoff time.Duration) (*Mirror, error) {
	m := newMirror(src, feed, logger, minBackoff, maxBackoff)
	rev, kvs, err := src.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	feed.Reset(rev, kvs, true)
	m.filled = true
	m.start()
	return m, nil
}

// StartRetrying is Start for a source that may not answer yet (a lazy
// client started before etcd): when the first read fails, the Feed reports
// its error (Fail) and the Mirror keeps reading, with backoff, until it
// fills the Feed; it never fails. It returns the first read's error, nil
// when it succeeded.
func StartRetrying(ctx context.Context, src Source, feed *Feed, logger log.Logger, minBackoff, maxBackoff time.Duration) (*Mirror, error) {
	m := newMirror(src, feed, logger, minBackoff, maxBackoff)
	rev, kvs, err := src.Snapshot(ctx)
	if err == nil {
		feed.Reset(rev, kvs, true)
		m.filled = true
	} else {
		feed.Fail(err)
	}
	m.start()
	return m, err
}

func newMirror(src Source, feed *Feed, logger log.Logger, minBackoff, maxBackoff time.Duration) *Mirror {
	if logger == nil {
		logger = log.NewNopLogger()
	}
	if minBackoff <= 0 {
		minBackoff = DefaultMinBackoff
	}
	if maxBackoff <= 0 {
		maxBackoff = DefaultMaxBackoff
	}
	return &Mirror{
		src:    src,
		feed:   feed,
		logger: logger,
		b:      backoff.New(minBackoff, maxBackoff),
		done:   make(chan struct{}),
	}
}

func (m *Mirror) start() {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go m.run(ctx)
}

// Feed returns the Feed the Mirror keeps.
func (m *Mirror) Feed() *Feed { return m.feed }

// Stop ends the Mirror's goroutine and waits for it. It is idempotent. It
// does not stop the Feed.
func (m *Mirror) Stop() {
	m.cancel()
	<-m.done
}

// run watches and, when the watch breaks, resumes it from the Feed's
// revision; it reads a fresh snapshot only when etcd says that revision is
// compacted or its history lost, or while the Feed has never been filled (a
// first read that failed). After an outage, consumers keep the error until the resumed
// watch has caught up: the changes that come before are held back and
// handed over in one batch with the true state, so that a consumer sees no
// state older than the one it had, and no error cleared early.
func (m *Mirror) run(ctx context.Context) {
	defer close(m.done)
	failing := !m.filled // the failed first read was reported
	resync := ""         // the cause of the snapshot a watch resumed after an outage asked for
	fail := func(err error) {
		if !failing {
			failing = true
			m.feed.Fail(err)
		}
	}
	for {
		if !m.filled || resync != "" {
			if !m.b.Sleep(ctx) {
				return
			}
			cause := causeOutage
			if m.filled {
				cause = resync
			}
			if !m.resync(ctx, fail, cause) {
				return
			}
			failing, resync = false, ""
			continue
		}
		var held []Change // changes of a resumed watch that has not caught up
		var heldRev int64
		apply := func(r WatchResponse) {
			switch {
			case r.Err != nil:
				m.countWatchError()
				level.Warn(m.logger).Log("msg", "etcd unreachable, the watch resumes when it answers", "rev", m.feed.Revision(), "err", r.Err)
				fail(r.Err)
			case !failing:
				m.feed.Apply(r.Rev, r.Changes)
			default:
				held = append(held, r.Changes...)
				heldRev = max(heldRev, r.Rev)
				if !r.Current {
					return
				}
				m.feed.Apply(heldRev, held) // clears the error
				held, heldRev, failing = nil, 0, false
				m.b.Reset()
				if mt := m.feed.metrics; mt != nil && mt.Resumes != nil {
					mt.Resumes.Add(1)
				}
				level.Info(m.logger).Log("msg", "watch resumed and caught up", "rev", m.feed.Revision())
			}
		}
		err := m.src.Watch(ctx, m.feed.Revision()+1, apply)
		if ctx.Err() != nil {
			return
		}
		// What was held back is dropped: the next watch starts after the
		// Feed's revision, which it never passed, and brings it again.
		if cause := resyncCause(err); cause != "" {
			level.Info(m.logger).Log("msg", "watch history "+cause+", reading a fresh snapshot", "rev", m.feed.Revision(), "err", err)
			if failing {
				// A fleet that was cut off together finds the history
				// compacted (or lost) together: its reads wait a random
				// share of the backoff, as a re-watch does.
				resync = cause
				continue
			}
			if !m.resync(ctx, fail, cause) {
				return
			}
			continue
		}
		m.countWatchError()
		if err == nil {
			err = errors.New("watch ended")
		}
		level.Warn(m.logger).Log("msg", "watch broken, resuming", "rev", m.feed.Revision(), "err", err)
		fail(err)
		if !m.b.Sleep(ctx) {
			return
		}
	}
}

func (m *Mirror) countWatchError() {
	if mt := m.feed.metrics; mt != nil && mt.WatchErrors != nil {
		mt.WatchErrors.Add(1)
	}
}

// Causes of a resync, as Metrics.Resyncs labels them.
const (
	causeCompacted   = "compacted"
	causeHistoryLost = "lost"
	causeOutage      = "outage"
)

// resyncCause returns the cause of the snapshot that a watch error calls
// for, "" for an error that a resumed watch rides out.
func resyncCause(err error) string {
	switch {
	case errors.Is(err, ErrCompacted):
		return causeCompacted
	case errors.Is(err, ErrHistoryLost):
		return causeHistoryLost
	}
	return ""
}

// resync reads a fresh snapshot into the Feed, with backoff until one
// succeeds; it returns false when ctx ends first.
func (m *Mirror) resync(ctx context.Context, fail func(error), cause string) bool {
	for {
		rev, kvs, err := m.src.Snapshot(ctx)
		if err == nil {
			if mt := m.feed.metrics; mt != nil && mt.Resyncs != nil {
				mt.Resyncs.With("cause", cause).Add(1)
			}
			m.feed.Reset(rev, kvs, !m.filled)
			m.filled = true
			m.b.Reset()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		fail(err)
		if !m.b.Sleep(ctx) {
			return false
		}
	}
}

// EntriesClient is the part of go-kit's etcdv3.Client that an
// EntriesSource reads through.
type EntriesClient interface {
	GetEntries(prefix string) ([]string, error)
	WatchPrefix(prefix string, ch chan struct{})
}

// EntriesSource serves a client that has only go-kit's methods. Keys are
// unknown there, so each value stands for its own key, and a count of reads
// stands for the revision. The goroutine running the client's WatchPrefix
// cannot be stopped through go-kit's interface; as in go-kit, it ends when
// the client's context does.
type EntriesSource struct {
	c      EntriesClient
	prefix string

	once    sync.Once
	signals chan struct{}
	seq     int64
	state   map[string]bool
	stale   bool // a read failed: the next Watch starts with one
}

// NewEntriesSource returns a Source reading prefix through c.
func NewEntriesSource(c EntriesClient, prefix string) *EntriesSource {
	return &EntriesSource{c: c, prefix: prefix, state: map[string]bool{}}
}

func (s *EntriesSource) read() (int64, []KV, error) {
	values, err := s.c.GetEntries(s.prefix)
	if err != nil {
		return 0, nil, fmt.Errorf("read prefix %q: %w", s.prefix, err)
	}
	s.seq++
	kvs := make([]KV, 0, len(values))
	for _, v := range values {
		kvs = append(kvs, KV{Key: v, Value: v, ModRev: s.seq})
	}
	return s.seq, kvs, nil
}

// Snapshot implements Source.
func (s *EntriesSource) Snapshot(context.Context) (int64, []KV, error) {
	rev, kvs, err := s.read()
	if err != nil {
		return 0, nil, err
	}
	s.state = make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		s.state[kv.Key] = true
	}
	return rev, kvs, nil
}

// Watch implements Source: each signal of WatchPrefix is one read, whose
// difference with the last is one response, current by nature. A client
// with go-kit's methods only has no revisions to resume from: after a read
// that failed, the next Watch starts with a read, lest the changes it
// missed wait for the next signal.
func (s *EntriesSource) Watch(ctx context.Context, _ int64, apply func(WatchResponse)) error {
	s.once.Do(func() {
		s.signals = make(chan struct{}, 1)
		go s.c.WatchPrefix(s.prefix, s.signals)
	})
	for {
		if !s.stale {
			select {
			case <-s.signals:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		rev, kvs, err := s.read()
		s.stale = err != nil
		if err != nil {
			return err
		}
		fresh := make(map[string]bool, len(kvs))
		var changes []Change
		for _, kv := range kvs {
			fresh[kv.Key] = true
			if !s.state[kv.Key] {
				changes = append(changes, Change{Op: Put, Key: kv.Key, Value: kv.Value, Rev: rev})
			}
		}
		for k := range s.state {
			if !fresh[k] {
				changes = append(changes, Change{Op: Delete, Key: k, Rev: rev})
			}
		}
		s.state = fresh
		apply(WatchResponse{Rev: rev, Changes: changes, Current: true})
	}
}
