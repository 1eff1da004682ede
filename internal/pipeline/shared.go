package pipeline

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/go-kit/kit/metrics"
	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/instance"
)

// ShareKey names a shared Mirror: consumers that give the same key share
// one Mirror, so one etcd watch and one first read.
type ShareKey struct {
	// Client is what the Source reads through, compared by identity: it
	// must be a pointer for the Mirror to be shared (a Mirror of any other
	// client is the consumer's own).
	Client any
	// Prefix is the prefix the Mirror follows.
	Prefix string
	// Kind tells apart Sources that make different things of etcd's
	// answers on one prefix (etcdv3's properties source takes a refused
	// read for no properties): consumers share a Mirror only with
	// consumers of their kind.
	Kind string
}

// ShareOptions configure a consumer's share of a Mirror.
type ShareOptions struct {
	// Source returns the Source of the Mirror, for the consumer that starts
	// it; logger is the shared Mirror's.
	Source func(logger log.Logger) Source
	// FailFast has Share fail when the prefix cannot be read within ctx,
	// as Start does; otherwise Share never fails, as StartRetrying.
	FailFast bool
	// Logger receives the Mirror's logs while the Tap is open.
	Logger log.Logger
	// Metrics receive the Mirror's Resyncs, WatchErrors and Resumes while
	// the Tap is open. The Feeds that follow the Mirror report the rest
	// (Instances, Update) themselves.
	Metrics *Metrics
	// MinBackoff and MaxBackoff are those of Start; the consumer that
	// starts the Mirror sets them.
	MinBackoff, MaxBackoff time.Duration
}

// The registry of shared Mirrors. An entry leaves it with its last Tap.
var registry = struct {
	mu sync.Mutex
	m  map[ShareKey]*shared
}{m: make(map[ShareKey]*shared)}

// shared is one Mirror of a prefix and the Feeds that follow it. The
// Mirror fills a Feed that keeps every key as its value (the root); each
// batch of the root is forwarded to the followers, which parse, filter and
// observe as their consumers ask. A Feed that joins later is filled from
// the root's content, under the lock that orders the forwarding, at the
// root's revision. A follower with an observer is handed its batches
// through a queue of its own (see queue), so that no observer runs on the
// Mirror's goroutine or under that lock.
type shared struct {
	key ShareKey

	refs  int           // open Taps; guarded by registry.mu
	ready chan struct{} // closed once the first read has been tried
	dead  bool          // the first read failed fast: no Mirror; set before ready closes

	mirror    *Mirror
	root      *Feed
	loggers   Loggers
	newSource func(log.Logger) Source // the starter's, for the reads of fail-fast joiners

	tapsMu sync.Mutex
	taps   map[*Tap]struct{}

	mu        sync.Mutex // orders joins against the forwarding
	followers map[*Feed]*follower
	filled    bool          // the root has had its first content, forwarded
	err       error         // the root's error, as last forwarded
	fails     int           // errors forwarded
	attempts  int           // snapshots tried
	lastErr   error         // of the last snapshot tried
	changed   chan struct{} // closed and replaced when any of the above changes
}

// follower is the state of one following Feed.
type follower struct {
	filled bool   // has had its first content
	q      *queue // nil: handed its batches on the Mirror's goroutine
}

// give hands h to feed: through the follower's queue if it has one, else
// at once, which is quick for a Feed without observer (its Subscriptions
// and go-kit channels never block it).
func (fl *follower) give(feed *Feed, h handout) {
	if fl.q != nil {
		fl.q.push(h)
		return
	}
	h.to(feed)
}

// Tap is one consumer's share of a Mirror. Close it when done: the last
// Close stops the Mirror.
type Tap struct {
	s          *shared
	metrics    *Metrics
	dropLogger func()
	feeds      []*Feed // guarded by s.mu
	once       sync.Once
}

// Share returns a Tap of the Mirror of key, starting it if no open Tap
// has it: the Mirror's first read is then done within ctx, on the caller's
// goroutine. Without FailFast it returns, with the Tap, the Mirror's
// current error (nil once it reads etcd), as StartRetrying does. With
// FailFast it fails when the Mirror cannot read etcd within ctx: when it
// is failing (its first read, or after an outage) the caller reads the
// prefix itself, as the Mirror's first read would, and fails with that
// read's error; once it reads, a Tap is returned when the Mirror reflects
// etcd again, and the error of the Mirror's next failed read, of another
// read of the caller's after the Mirror fails again, or ctx's, is
// returned instead. A Mirror that resumes its watch after an outage makes
// no read of its own to wait for.
func Share(ctx context.Context, key ShareKey, o ShareOptions) (*Tap, error) {
	for {
		s, created := acquire(key)
		s.mu.Lock()
		tried := s.attempts // reads that ended before this consumer came
		s.mu.Unlock()
		t := s.newTap(o.Logger, o.Metrics)
		if created {
			if err := s.start(ctx, o); err != nil {
				t.Close()
				return nil, err
			}
		} else {
			select {
			case <-s.ready:
			case <-ctx.Done():
				t.Close()
				return nil, fmt.Errorf("read prefix %q: %w", key.Prefix, ctx.Err())
			}
			if s.dead {
				continue // the starter's read failed: try again, maybe as the starter
			}
		}
		if !o.FailFast {
			return t, s.currentErr()
		}
		if err := s.waitHealthy(ctx, tried, o.Logger); err != nil {
			t.Close()
			return nil, err
		}
		return t, nil
	}
}

// acquire returns the entry of key with one more reference, and whether
// it is new (the caller then starts it).
func acquire(key ShareKey) (*shared, bool) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	shareable := ShareableClient(key.Client)
	if s := registry.m[key]; shareable && s != nil {
		s.refs++
		return s, false
	}
	s := &shared{
		key:       key,
		refs:      1,
		ready:     make(chan struct{}),
		taps:      make(map[*Tap]struct{}),
		followers: make(map[*Feed]*follower),
		changed:   make(chan struct{}),
	}
	if shareable {
		registry.m[key] = s
	}
	return s, true
}

// ShareableClient reports whether client has an identity to share by: it
// is a non-nil pointer.
func ShareableClient(client any) bool {
	v := reflect.ValueOf(client)
	return v.Kind() == reflect.Pointer && !v.IsNil()
}

// start reads the prefix and starts the Mirror; with FailFast, a failed
// read removes the entry, and the Taps waiting for it try again.
func (s *shared) start(ctx context.Context, o ShareOptions) error {
	defer close(s.ready)
	s.newSource = o.Source
	// The Mirror reports these through its Feed, the root; the followers
	// report Instances and Update themselves.
	s.root = NewFeed(WithParser(rawValue), WithObserver(s.forward), withEveryBatch(), WithMetrics(&Metrics{
		Resyncs:     &tapCounter{s: s, pick: func(m *Metrics) metrics.Counter { return m.Resyncs }},
		WatchErrors: &tapCounter{s: s, pick: func(m *Metrics) metrics.Counter { return m.WatchErrors }},
		Resumes:     &tapCounter{s: s, pick: func(m *Metrics) metrics.Counter { return m.Resumes }},
	}))
	src := &attemptSource{Source: o.Source(&s.loggers), s: s}
	start := StartRetrying
	if o.FailFast {
		start = Start
	}
	m, err := start(ctx, src, s.root, &s.loggers, o.MinBackoff, o.MaxBackoff)
	if m == nil {
		registry.mu.Lock()
		if registry.m[s.key] == s {
			delete(registry.m, s.key)
		}
		registry.mu.Unlock()
		s.dead = true
		return err
	}
	s.mirror = m
	return nil
}

// rawValue is the root's parser: every value is kept as it is, for the
// followers to parse.
func rawValue(_, value string) (instance.Instance, error) {
	return instance.Instance{Address: value}, nil
}

func (s *shared) newTap(logger log.Logger, m *Metrics) *Tap {
	t := &Tap{s: s, metrics: m, dropLogger: s.loggers.Add(logger)}
	s.tapsMu.Lock()
	s.taps[t] = struct{}{}
	s.tapsMu.Unlock()
	return t
}

// forward hands one batch of the root to every follower, on the Mirror's
// goroutine: to those without observer at once, to the others through
// their queues, which it never waits for. A follower that joined after
// the root took the batch in is filled with it already: Apply skips what a
// Feed reflects, a Reset to the content a Feed has changes nothing, and an
// error it has is not told again.
func (s *shared) forward(b Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case b.Err != nil:
		s.err = b.Err
		s.fails++
		for f, fl := range s.followers {
			fl.give(f, handout{err: b.Err})
		}
	case b.Reset || b.Resync:
		s.filled, s.err = true, nil
		_, kvs := s.root.kvs()
		for f, fl := range s.followers {
			fl.give(f, handout{reset: true, first: !fl.filled, rev: b.Rev, kvs: kvs})
			fl.filled = true
		}
	default:
		s.err = nil
		for f, fl := range s.followers {
			if fl.filled {
				fl.give(f, handout{rev: b.Rev, changes: b.Changes})
			}
		}
	}
	s.signalLocked()
}

func (s *shared) signalLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// tried records the outcome of a snapshot.
func (s *shared) tried(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts++
	s.lastErr = err
	s.signalLocked()
}

// currentErr is the Mirror's error: the forwarded one, or, before the
// first content, that of the last read.
func (s *shared) currentErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || s.filled {
		return s.err
	}
	return s.lastErr
}

// waitHealthy waits until the Mirror reflects etcd without error, and
// fails with the error of the first of the Mirror's reads that fails after
// the first tried ones, or when ctx ends. A Mirror that resumes its watch
// after an outage reads nothing meanwhile: each time it is found failing
// with an error not seen before, waitHealthy reads the prefix itself,
// bounded as the Mirror's first read is, and fails if that read does.
func (s *shared) waitHealthy(ctx context.Context, tried int, logger log.Logger) error {
	if logger == nil {
		logger = log.NewNopLogger()
	}
	probed := -1 // the count of errors forwarded when the caller's read succeeded
	for {
		s.mu.Lock()
		if s.filled && s.err == nil {
			s.mu.Unlock()
			return nil
		}
		if s.attempts > tried && s.lastErr != nil {
			err := s.lastErr
			s.mu.Unlock()
			return err
		}
		fails, changed := s.fails, s.changed
		s.mu.Unlock()
		if fails != probed {
			if _, _, err := s.newSource(logger).Snapshot(ctx); err != nil {
				return err
			}
			probed = fails
			continue
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("read prefix %q: %w", s.key.Prefix, ctx.Err())
		}
	}
}

// Follow has feed follow the Mirror: it is filled before Follow returns
// from what the Mirror holds, at the Mirror's revision (with its error, if
// it is failing; a Mirror that has not read etcd yet fills it later), and
// then handed every batch until the Tap is closed. A feed without observer
// is handed them on the Mirror's goroutine; a feed with one, in order, on
// a goroutine of the Tap's, so that an observer that blocks holds back
// only its own feed, and one that starts a consumer of the same Mirror
// (a Pool callback starting an Instancer) does not deadlock. feed must
// have no other producer; its owner stops it.
func (t *Tap) Follow(feed *Feed) {
	s := t.s
	fl := &follower{}
	if feed.observe != nil {
		fl.q = newQueue(feed)
	}
	s.mu.Lock()
	if s.filled {
		rev, kvs := s.root.kvs()
		fl.give(feed, handout{reset: true, first: true, rev: rev, kvs: kvs})
		fl.filled = true
	}
	if s.err != nil {
		fl.give(feed, handout{err: s.err})
	}
	s.followers[feed] = fl
	t.feeds = append(t.feeds, feed)
	var filled chan struct{}
	if fl.q != nil {
		filled = make(chan struct{})
		fl.q.push(handout{handed: filled})
	}
	s.mu.Unlock()
	if fl.q != nil {
		// The observer sees the fill off the lock, as it sees the rest.
		fl.q.wait(filled)
	}
}

// Dup returns another Tap of the same Mirror, for an owner whose life
// differs from t's, with its own logger and metrics.
func (t *Tap) Dup(logger log.Logger, m *Metrics) *Tap {
	registry.mu.Lock()
	t.s.refs++
	registry.mu.Unlock()
	return t.s.newTap(logger, m)
}

// Close ends the Tap: its Feeds are handed nothing more (what their queues
// hold is dropped), the goroutines that feed them are waited for (with the
// observer call they are in), and the last Tap of the Mirror stops it and
// waits for it. It is idempotent. It must not be called from the observer
// of a Feed the Tap feeds, which it would wait for.
func (t *Tap) Close() {
	t.once.Do(func() {
		s := t.s
		var queues []*queue
		s.mu.Lock()
		for _, f := range t.feeds {
			if fl := s.followers[f]; fl.q != nil {
				queues = append(queues, fl.q)
			}
			delete(s.followers, f)
		}
		s.mu.Unlock()
		for _, q := range queues {
			q.stop()
		}
		s.tapsMu.Lock()
		delete(s.taps, t)
		s.tapsMu.Unlock()
		t.dropLogger()
		registry.mu.Lock()
		s.refs--
		last := s.refs == 0
		if last && registry.m[s.key] == s {
			delete(registry.m, s.key)
		}
		registry.mu.Unlock()
		if last && s.mirror != nil {
			s.mirror.Stop()
			s.root.Stop()
		}
	})
}

// attemptSource tells its shared entry the outcome of each snapshot, for
// the consumers that wait for one.
type attemptSource struct {
	Source
	s *shared
}

// Snapshot implements Source.
func (a *attemptSource) Snapshot(ctx context.Context) (int64, []KV, error) {
	rev, kvs, err := a.Source.Snapshot(ctx)
	a.s.tried(err)
	return rev, kvs, err
}

// tapCounter counts for every open Tap that has the counter pick chooses.
type tapCounter struct {
	s      *shared
	pick   func(*Metrics) metrics.Counter
	labels []string
}

// With implements metrics.Counter.
func (c *tapCounter) With(labelValues ...string) metrics.Counter {
	return &tapCounter{s: c.s, pick: c.pick, labels: append(append([]string(nil), c.labels...), labelValues...)}
}

// Add implements metrics.Counter.
func (c *tapCounter) Add(delta float64) {
	c.s.tapsMu.Lock()
	defer c.s.tapsMu.Unlock()
	for t := range c.s.taps {
		if t.metrics == nil {
			continue
		}
		if counter := c.pick(t.metrics); counter != nil {
			if len(c.labels) > 0 {
				counter = counter.With(c.labels...)
			}
			counter.Add(delta)
		}
	}
}

// shares returns the number of shared Mirrors open, for tests.
func shares() int {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	return len(registry.m)
}
