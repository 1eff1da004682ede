package etcdv3

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// ChangeType says what happened to a key.
type ChangeType int

// Change types.
const (
	Create ChangeType = iota + 1
	Modify
	Delete
)

func (t ChangeType) String() string {
	switch t {
	case Create:
		return "create"
	case Modify:
		return "modify"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("ChangeType(%d)", int(t))
}

// Change is one key's change under a mirrored prefix.
type Change struct {
	Type      ChangeType
	Key       string
	Value     string // the new value; empty for Delete
	PrevValue string // the value before the change; empty for Create
	// Revision is the etcd revision of the change. Changes found by a
	// resync carry the revision of the snapshot.
	Revision int64
}

// Update is what a Mirror hands to its handler: the changes of one watch
// response or of one resync, or an error.
type Update struct {
	// Revision is the etcd revision the mirror reflects after this update.
	Revision int64
	Changes  []Change
	// Resync is set when the changes were found by comparing a fresh
	// snapshot with the mirror (at start, after compaction or after an
	// outage), rather than seen one by one in a watch. They are then
	// ordered by revision, deletes last.
	Resync bool
	// Err is set, once per outage, when etcd cannot be read; the mirror
	// keeps its content and retries with backoff. The next update without
	// Err carries the true state.
	Err error
}

// Mirror keeps a copy of every key under a prefix and reports each change to
// it, in order, exactly once: it reads a snapshot at revision R, watches
// from R+1 and applies events by key; after compaction or an outage it reads
// a fresh snapshot and reports the difference. Instancer is built on it; use
// it directly to see keys and revisions, not just values.
type Mirror struct {
	client Client
	prefix string
	logger log.Logger
	handle func(Update)

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	state map[string]string // key → value, owned by the loop after start
	rev   int64
}

// MirrorOption configures a Mirror.
type MirrorOption func(*mirrorConfig)

type mirrorConfig struct {
	minBackoff, maxBackoff time.Duration
}

// WithRetryBackoff sets the bounds of the capped exponential backoff (with
// jitter) between attempts to reach etcd again. Default 50 ms to 2 s.
func WithRetryBackoff(min, max time.Duration) MirrorOption {
	return func(c *mirrorConfig) { c.minBackoff, c.maxBackoff = min, max }
}

// NewMirror reads the prefix, hands the initial content to handle as one
// Update of Create changes before returning, and then follows the prefix in
// a goroutine until Stop. handle is called from one goroutine at a time,
// in order; it must not call Stop. NewMirror fails for an invalid prefix or
// when etcd cannot be read within ctx.
func NewMirror(ctx context.Context, c Client, prefix string, logger log.Logger, handle func(Update), opts ...MirrorOption) (*Mirror, error) {
	if c == nil {
		return nil, errors.New("etcdv3: mirror: nil client")
	}
	if handle == nil {
		return nil, errors.New("etcdv3: mirror: nil handler")
	}
	if err := ValidatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("etcdv3: watch prefix %q: %w", prefix, err)
	}
	if logger == nil {
		logger = log.NewNopLogger()
	}
	cfg := mirrorConfig{minBackoff: 50 * time.Millisecond, maxBackoff: 2 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	m := &Mirror{
		client: c,
		prefix: prefix,
		logger: log.With(logger, "prefix", prefix),
		handle: handle,
		ctx:    loopCtx,
		cancel: cancel,
		done:   make(chan struct{}),
		state:  make(map[string]string),
	}
	src := m.source()
	snap, err := src.snapshot(ctx)
	if err != nil {
		cancel()
		return nil, err // it names the prefix
	}
	m.applySnapshot(snap)
	go m.run(src, newBackoff(cfg.minBackoff, cfg.maxBackoff))
	return m, nil
}

// Stop ends the mirror's goroutine and waits for it. It is idempotent.
func (m *Mirror) Stop() {
	m.cancel()
	<-m.done
}

// Revision returns the etcd revision the mirror reflects.
func (m *Mirror) Revision() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rev
}

// Prefix returns the mirrored prefix.
func (m *Mirror) Prefix() string { return m.prefix }

// run alternates between watching and, when the watch breaks, reading a
// fresh snapshot with backoff until one succeeds.
func (m *Mirror) run(src source, b *backoff) {
	defer close(m.done)
	failing := false
	for {
		err := src.watch(m.ctx, m.Revision()+1, m.applyWatch)
		if m.ctx.Err() != nil {
			return
		}
		compacted := errors.Is(err, ErrCompacted)
		if compacted {
			level.Info(m.logger).Log("msg", "watch history compacted, reading a fresh snapshot", "rev", m.Revision(), "err", err)
		} else {
			level.Warn(m.logger).Log("msg", "watch broken, resyncing", "rev", m.Revision(), "err", err)
			m.fail(err, &failing)
			if !b.sleep(m.ctx) {
				return
			}
		}
		for {
			snap, err := src.snapshot(m.ctx)
			if err == nil {
				m.resync(snap)
				failing = false
				b.reset()
				break
			}
			if m.ctx.Err() != nil {
				return
			}
			m.fail(err, &failing)
			if !b.sleep(m.ctx) {
				return
			}
		}
	}
}

// fail reports err to the handler once per outage.
func (m *Mirror) fail(err error, failing *bool) {
	if *failing {
		return
	}
	*failing = true
	m.handle(Update{Revision: m.Revision(), Err: err})
}

func (m *Mirror) applySnapshot(snap Snapshot) {
	changes := make([]Change, 0, len(snap.KVs))
	for _, kv := range snap.KVs {
		m.state[kv.Key] = kv.Value
		changes = append(changes, Change{Type: Create, Key: kv.Key, Value: kv.Value, Revision: kv.ModRevision})
	}
	m.setRev(snap.Revision)
	m.handle(Update{Revision: snap.Revision, Changes: changes, Resync: true})
}

// resync reports the difference between the mirror and a fresh snapshot;
// the update is sent even when empty, to clear an error.
func (m *Mirror) resync(snap Snapshot) {
	fresh := make(map[string]string, len(snap.KVs))
	var changes []Change
	for _, kv := range snap.KVs {
		fresh[kv.Key] = kv.Value
		old, had := m.state[kv.Key]
		switch {
		case !had:
			changes = append(changes, Change{Type: Create, Key: kv.Key, Value: kv.Value, Revision: kv.ModRevision})
		case old != kv.Value:
			changes = append(changes, Change{Type: Modify, Key: kv.Key, Value: kv.Value, PrevValue: old, Revision: kv.ModRevision})
		}
	}
	for k, old := range m.state {
		if _, ok := fresh[k]; !ok {
			changes = append(changes, Change{Type: Delete, Key: k, PrevValue: old, Revision: snap.Revision})
		}
	}
	// In revision order, as a watch would have reported them; deletes,
	// which carry the snapshot's revision, come last.
	slices.SortFunc(changes, func(a, b Change) int {
		if a.Revision != b.Revision {
			return cmp.Compare(a.Revision, b.Revision)
		}
		return strings.Compare(a.Key, b.Key)
	})
	m.state = fresh
	m.setRev(snap.Revision)
	m.handle(Update{Revision: snap.Revision, Changes: changes, Resync: true})
}

// applyWatch applies one watch response by key. Events at or below the
// mirror's revision are already reflected and skipped, so nothing is
// applied twice.
func (m *Mirror) applyWatch(resp WatchResponse) {
	rev := m.Revision()
	changes := make([]Change, 0, len(resp.Events))
	for _, ev := range resp.Events {
		if ev.ModRevision <= rev {
			continue
		}
		old, had := m.state[ev.Key]
		switch ev.Type {
		case EventPut:
			ch := Change{Type: Create, Key: ev.Key, Value: ev.Value, Revision: ev.ModRevision}
			if had {
				ch.Type, ch.PrevValue = Modify, old
			}
			m.state[ev.Key] = ev.Value
			changes = append(changes, ch)
		case EventDelete:
			if !had {
				continue
			}
			delete(m.state, ev.Key)
			changes = append(changes, Change{Type: Delete, Key: ev.Key, PrevValue: old, Revision: ev.ModRevision})
		}
	}
	if resp.Revision > rev {
		m.setRev(resp.Revision)
	}
	if len(changes) > 0 {
		m.handle(Update{Revision: m.Revision(), Changes: changes})
	}
}

func (m *Mirror) setRev(rev int64) {
	m.mu.Lock()
	m.rev = rev
	m.mu.Unlock()
}
