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

// Source is where a Mirror reads a prefix from.
type Source interface {
	// Snapshot reads every key under the prefix and the store revision of
	// the read.
	Snapshot(ctx context.Context) (rev int64, kvs []KV, err error)
	// Watch hands apply every change after rev, one watch response at a
	// time, on the calling goroutine, until the watch fails (it returns
	// why) or ctx ends. The changes need no Instance. apply's rev is the
	// revision through which every change has been handed over: the last
	// change's own revision, or one etcd vouches for with nothing pending
	// (a progress notification). It is never a response header's
	// revision, which is the store's and runs ahead of a watch that is
	// catching up.
	Watch(ctx context.Context, rev int64, apply func(rev int64, changes []Change)) error
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
// revision R, watches from R+1 and applies each response as it comes;
// after compaction or an outage it reads a fresh snapshot and applies the
// net difference.
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

// run alternates between watching and, when the watch breaks, reading a
// fresh snapshot with backoff until one succeeds. A Mirror whose first
// read failed starts with the reading.
func (m *Mirror) run(ctx context.Context) {
	defer close(m.done)
	failing := !m.filled // the failed first read was reported
	fail := func(err error) {
		if !failing {
			failing = true
			m.feed.Fail(err)
		}
	}
	for {
		if !m.filled {
			if !m.b.Sleep(ctx) {
				return
			}
			if !m.resync(ctx, fail, causeOutage) {
				return
			}
			failing = false
			continue
		}
		err := m.src.Watch(ctx, m.feed.Revision()+1, m.feed.Apply)
		if ctx.Err() != nil {
			return
		}
		cause := causeCompacted
		if errors.Is(err, ErrCompacted) {
			level.Info(m.logger).Log("msg", "watch history compacted, reading a fresh snapshot", "rev", m.feed.Revision(), "err", err)
		} else {
			cause = causeOutage
			if mt := m.feed.metrics; mt != nil && mt.WatchErrors != nil {
				mt.WatchErrors.Add(1)
			}
			if err == nil {
				err = errors.New("watch ended")
			}
			level.Warn(m.logger).Log("msg", "watch broken, resyncing", "rev", m.feed.Revision(), "err", err)
			fail(err)
			if !m.b.Sleep(ctx) {
				return
			}
		}
		if !m.resync(ctx, fail, cause) {
			return
		}
		failing = false
	}
}

// Causes of a resync, as Metrics.Resyncs labels them.
const (
	causeCompacted = "compacted"
	causeOutage    = "outage"
)

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
// difference with the last is one response.
func (s *EntriesSource) Watch(ctx context.Context, _ int64, apply func(int64, []Change)) error {
	s.once.Do(func() {
		s.signals = make(chan struct{}, 1)
		go s.c.WatchPrefix(s.prefix, s.signals)
	})
	for {
		select {
		case <-s.signals:
		case <-ctx.Done():
			return ctx.Err()
		}
		rev, kvs, err := s.read()
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
		apply(rev, changes)
	}
}
