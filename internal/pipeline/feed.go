package pipeline

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/kit/metrics"
	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/etcdsd/etcdsd/instance"
)

// ParseFunc turns an etcd key and value into an instance. The default,
// ParseValue, is the instance value format of package instance.
type ParseFunc func(key, value string) (instance.Instance, error)

// ParseValue parses value with instance.Parse; the key plays no part.
func ParseValue(_, value string) (instance.Instance, error) { return instance.Parse(value) }

// KV is one key of a snapshot.
type KV struct {
	Key, Value string
	ModRev     int64
}

// entry is what the Feed keeps of a key. inst is the instance registered,
// nil when the value parsed to nothing but its address (a plain value),
// which then need not be stored twice. seen is what the Filter made of it,
// nil when consumers see the instance as registered: hidden when they do
// not see it at all. rev is the revision of the last put of the value, so
// that a Feed that joins a shared Mirror is filled with the revisions a
// snapshot would give (see Tap).
type entry struct {
	value string
	inst  *instance.Instance
	seen  *instance.Instance
	rev   int64
}

// hidden is the seen of an entry the Filter hides.
var hidden = new(instance.Instance)

func (e entry) registered() instance.Instance {
	if e.inst == nil {
		return instance.Instance{Address: e.value}
	}
	return *e.inst
}

func (e entry) visible() bool { return e.seen != hidden }

// instance is what consumers see of a visible entry.
func (e entry) instance() instance.Instance {
	if e.seen != nil && e.seen != hidden {
		return *e.seen
	}
	return e.registered()
}

func (e entry) change(op Op, key string, rev int64) Change {
	return Change{Op: op, Key: key, Value: e.value, Instance: e.instance(), Rev: rev}
}

// Filter decides what consumers see of the instance registered at key: the
// instance they see (an operator's weight override, say; the value stays
// the one registered) and whether they see it at all (a drained instance
// is hidden). It runs under the Feed's lock, so it must be quick and must
// not call the Feed; when what it decides changes, call Refilter.
type Filter func(key string, registered instance.Instance) (seen instance.Instance, visible bool)

// Feed holds the instances under one prefix, by key, and hands each change
// to its consumers: Subscriptions (coalesced batches of typed changes), an
// observer (every batch, in order) and go-kit sd.Event channels (the full,
// sorted instance list, kept only while such a channel is registered).
//
// One producer (a Mirror) calls Reset, Apply and Fail, from one goroutine
// at a time; Refilter may come from another (see Refilter). Consumers may call the other
// methods from any goroutine.
type Feed struct {
	parse   ParseFunc
	logger  log.Logger
	observe func(Batch)
	every   bool // observe even the batches that change nothing
	metrics *Metrics
	filter  Filter // nil: every instance is seen as registered

	mu      sync.Mutex
	state   map[string]entry
	hidden  int               // entries of state the filter hides
	bad     map[string]string // key → malformed value, logged once
	rev     int64
	err     error
	subs    map[*Subscription]struct{}
	events  fanout
	stopped bool
}

// FeedOption configures a Feed.
type FeedOption func(*Feed)

// WithParser sets how values are parsed and validated. Default ParseValue.
func WithParser(p ParseFunc) FeedOption { return func(f *Feed) { f.parse = p } }

// WithObserver has every batch handed to observe, in order, on the
// producer's goroutine, after the Feed has applied it. observe must not call
// the Feed's producer methods.
func WithObserver(observe func(Batch)) FeedOption { return func(f *Feed) { f.observe = observe } }

// withEveryBatch has the observer handed every batch, even one that only
// moves the revision (a progress notification, a put of the value a key
// already had): a shared Mirror's forwarding keeps its followers at its
// revision with it.
func withEveryBatch() FeedOption { return func(f *Feed) { f.every = true } }

// WithLogger sets where malformed values are logged. Default: nowhere.
func WithLogger(logger log.Logger) FeedOption { return func(f *Feed) { f.logger = logger } }

// Metrics are what a Feed and the Mirror that fills it report, already
// labelled by their creator (e.g. with the prefix). Nil fields, and a nil
// *Metrics, report nothing and cost nothing.
type Metrics struct {
	// Instances is set to the number of instances after every batch.
	Instances metrics.Gauge
	// Resyncs counts fresh snapshots read after the first, with the label
	// "cause": "compacted" (etcd compacted the revision a watch was to
	// resume from) or "outage" (the first read failed and a later one
	// filled the Feed). A broken watch is resumed, not read again.
	Resyncs metrics.Counter
	// WatchErrors counts watches that broke for another reason than
	// compaction: no leader, etcd unreachable, closed by etcd.
	WatchErrors metrics.Counter
	// Resumes counts recoveries from a broken watch or an outage without
	// a snapshot: the watch resumed from the Feed's revision and caught
	// up, and the error cleared.
	Resumes metrics.Counter
	// Update observes the seconds from the Feed taking a batch in (a watch
	// response, a snapshot) to every consumer being handed it: the
	// Subscriptions offered it, the observer run, go-kit channels told.
	Update metrics.Histogram
}

// WithMetrics has the Feed, and the Mirror that fills it, report to m.
func WithMetrics(m *Metrics) FeedOption { return func(f *Feed) { f.metrics = m } }

// WithFilter has consumers see each instance as filter makes it; the Feed
// keeps the instances as registered, so that Refilter can decide again.
// Default: consumers see every instance as registered.
func WithFilter(filter Filter) FeedOption { return func(f *Feed) { f.filter = filter } }

// NewFeed returns an empty Feed.
func NewFeed(opts ...FeedOption) *Feed {
	f := &Feed{
		parse:  ParseValue,
		logger: log.NewNopLogger(),
		state:  make(map[string]entry),
		bad:    make(map[string]string),
		subs:   make(map[*Subscription]struct{}),
	}
	f.events.init()
	for _, o := range opts {
		o(f)
	}
	return f
}

// Reset brings the Feed to the content of a snapshot at revision rev and
// publishes the net difference as one batch, ordered by revision (deletes,
// which carry rev, last). The batch is published even when empty if an
// error is to be cleared. first marks the Feed's first content: the batch
// is then a Reset as well.
func (f *Feed) Reset(rev int64, kvs []KV, first bool) {
	at := time.Now()
	f.mu.Lock()
	var changes []Change
	fresh := make(map[string]struct{}, len(kvs))
	for _, kv := range kvs {
		fresh[kv.Key] = struct{}{}
		if ch, ok := f.putLocked(kv.Key, kv.Value, kv.ModRev); ok {
			changes = append(changes, ch)
		}
	}
	// Every key is checked: counting is no shortcut, since a fresh key
	// whose value is malformed is in neither the state nor the count.
	for key, old := range f.state {
		if _, ok := fresh[key]; !ok {
			if ch, ok := f.deleteLocked(key, old, rev); ok {
				changes = append(changes, ch)
			}
		}
	}
	for key := range f.bad {
		if _, ok := fresh[key]; !ok {
			delete(f.bad, key)
		}
	}
	slices.SortFunc(changes, func(a, b Change) int {
		if c := cmp.Compare(a.Rev, b.Rev); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	b := Batch{Rev: rev, Changes: changes, Reset: first, Resync: true, At: at}
	f.publishLocked(b, first || len(changes) > 0 || f.err != nil)
}

// Apply applies the changes of one watch response; rev is the revision
// through which the source has handed over every change (see Source.Watch),
// and the Feed reflects the greatest of rev and the changes' own revisions
// afterwards. Changes at or below the Feed's revision are already reflected
// and skipped, a put of the value a key already has changes nothing, and a
// delete of an absent key is dropped. Their Instance fields are ignored:
// values are parsed here.
func (f *Feed) Apply(rev int64, raw []Change) {
	at := time.Now()
	f.mu.Lock()
	changes := make([]Change, 0, len(raw))
	for _, ch := range raw {
		if ch.Rev != 0 && ch.Rev <= f.rev {
			continue
		}
		rev = max(rev, ch.Rev)
		switch ch.Op {
		case Put:
			if c, ok := f.putLocked(ch.Key, ch.Value, ch.Rev); ok {
				changes = append(changes, c)
			}
		case Delete:
			delete(f.bad, ch.Key)
			if old, ok := f.state[ch.Key]; ok {
				if c, ok := f.deleteLocked(ch.Key, old, ch.Rev); ok {
					changes = append(changes, c)
				}
			}
		}
	}
	if rev < f.rev {
		rev = f.rev
	}
	f.publishLocked(Batch{Rev: rev, Changes: changes, At: at}, len(changes) > 0 || f.err != nil)
}

// Fail records that etcd cannot be read. Consumers get one batch with Err
// and keep what they have; the next Reset or Apply clears it.
func (f *Feed) Fail(err error) {
	if err == nil {
		return
	}
	at := time.Now()
	f.mu.Lock()
	f.publishLocked(Batch{Rev: f.rev, Err: err, At: at}, true)
}

// putLocked stores value under key and returns the change consumers see,
// if any. A value that does not parse is logged once and leaves the key
// absent.
func (f *Feed) putLocked(key, value string, rev int64) (Change, bool) {
	old, had := f.state[key]
	if had && old.value == value {
		if rev > old.rev {
			old.rev = rev
			f.state[key] = old
		}
		return Change{}, false
	}
	if bad, ok := f.bad[key]; ok && bad == value {
		return Change{}, false
	}
	inst, err := f.parse(key, value)
	if err != nil {
		level.Error(f.logger).Log("msg", "skipping malformed instance", "key", key, "err", err)
		f.bad[key] = value
		if had {
			return f.deleteLocked(key, old, rev)
		}
		return Change{}, false
	}
	delete(f.bad, key)
	e := entry{value: value, rev: rev}
	if !inst.IsPlain(value) {
		e.inst = &inst
	}
	f.filterLocked(key, &e)
	return f.replaceLocked(key, old, had, e, rev)
}

// filterLocked sets e.seen from the filter.
func (f *Feed) filterLocked(key string, e *entry) {
	e.seen = nil
	if f.filter == nil {
		return
	}
	registered := e.registered()
	seen, visible := f.filter(key, registered)
	switch {
	case !visible:
		e.seen = hidden
	case !seen.Equal(registered):
		e.seen = &seen
	}
}

// replaceLocked stores e under key in place of old (if had) and returns
// the change consumers see, if any: a put when e is visible (its Prev the
// old value if that was visible), a delete when only old was.
func (f *Feed) replaceLocked(key string, old entry, had bool, e entry, rev int64) (Change, bool) {
	wasVisible, isVisible := had && old.visible(), e.visible()
	f.state[key] = e
	if had && !old.visible() {
		f.hidden--
	}
	if !isVisible {
		f.hidden++
	}
	f.events.swap(old.value, wasVisible, e.value, isVisible)
	switch {
	case isVisible:
		ch := e.change(Put, key, rev)
		if wasVisible {
			ch.Prev = old.value
		}
		return ch, true
	case wasVisible:
		ch := old.change(Delete, key, rev)
		ch.Prev = old.value
		return ch, true
	}
	return Change{}, false
}

// deleteLocked removes key and returns the change consumers see, if any:
// none when they did not see it.
func (f *Feed) deleteLocked(key string, old entry, rev int64) (Change, bool) {
	delete(f.state, key)
	if !old.visible() {
		f.hidden--
		return Change{}, false
	}
	f.events.swap(old.value, true, "", false)
	ch := old.change(Delete, key, rev)
	ch.Prev = old.value
	return ch, true
}

// Refilter asks the filter again about every instance, and publishes what
// consumers see differently as one batch at the Feed's revision, keeping
// its error: call it when what the filter decides has changed. Unlike the
// other producer methods, it may be called from another goroutine than the
// producer's (the one that follows what the filter reads); an observer is
// then called from both.
func (f *Feed) Refilter() {
	if f.filter == nil {
		return
	}
	at := time.Now()
	f.mu.Lock()
	var changes []Change
	for key, old := range f.state {
		e := old
		f.filterLocked(key, &e)
		if e.visible() == old.visible() && (!e.visible() || e.instance().Equal(old.instance())) {
			continue // consumers see it as before
		}
		if ch, ok := f.replaceLocked(key, old, true, e, f.rev); ok {
			changes = append(changes, ch)
		}
	}
	f.publishLocked(Batch{Rev: f.rev, Changes: changes, Err: f.err, At: at}, len(changes) > 0)
}

// publishLocked makes b the Feed's news, hands it to every consumer and
// unlocks; the observer is called after the unlock.
func (f *Feed) publishLocked(b Batch, send bool) {
	f.rev, f.err = b.Rev, b.Err
	if f.stopped || !send {
		quiet := !f.stopped && f.every
		f.mu.Unlock()
		if quiet && f.observe != nil {
			f.observe(b)
		}
		return
	}
	for s := range f.subs {
		s.offer(b)
	}
	f.events.publish(b.Err)
	// Set under the lock: Apply and Refilter may publish from two
	// goroutines, and an older count set last would stay.
	if m := f.metrics; m != nil && m.Instances != nil {
		m.Instances.Set(float64(len(f.state) - f.hidden))
	}
	f.mu.Unlock()
	if f.observe != nil {
		f.observe(b)
	}
	if m := f.metrics; m != nil && m.Update != nil && b.Err == nil {
		m.Update.Observe(time.Since(b.At).Seconds())
	}
}

// Subscribe returns a Subscription whose first batch is a Reset with the
// current content (and the current error, if any).
func (f *Feed) Subscribe() *Subscription {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := newSubscription(f, Batch{Rev: f.rev, Reset: true, Err: f.err, Changes: f.contentsLocked()})
	if !f.stopped {
		f.subs[s] = struct{}{}
	}
	return s
}

func (f *Feed) unsubscribe(s *Subscription) {
	f.mu.Lock()
	delete(f.subs, s)
	f.mu.Unlock()
}

// Contents returns the current content as Puts, in no particular order.
func (f *Feed) Contents() []Change {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.contentsLocked()
}

func (f *Feed) contentsLocked() []Change {
	out := make([]Change, 0, len(f.state)-f.hidden)
	for key, e := range f.state {
		if e.visible() {
			out = append(out, e.change(Put, key, 0))
		}
	}
	return out
}

// kvs returns the revision and the content, as a snapshot at that
// revision would give it, including what the filter hides.
func (f *Feed) kvs() (int64, []KV) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]KV, 0, len(f.state))
	for key, e := range f.state {
		out = append(out, KV{Key: key, Value: e.value, ModRev: e.rev})
	}
	return f.rev, out
}

// failingWith reports whether the Feed's error is err already.
func (f *Feed) failingWith(err error) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err != nil && sameErr(f.err, err)
}

// Len returns the number of instances consumers see.
func (f *Feed) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.state) - f.hidden
}

// Revision returns the etcd revision the Feed reflects.
func (f *Feed) Revision() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rev
}

// Stop ends delivery: every go-kit channel is deregistered (its goroutine
// waited for), Subscriptions get nothing more, and later Register calls are
// ignored. It is idempotent.
func (f *Feed) Stop() {
	f.mu.Lock()
	f.stopped = true
	clear(f.subs)
	subs := f.events.stop()
	f.mu.Unlock()
	for _, s := range subs {
		s.stop()
	}
}

// Register adds ch as a go-kit subscriber: it receives the current state
// (sorted distinct values, and the error if etcd cannot be read) before
// Register returns, then one sd.Event per change, coalesced while it does
// not read; a reader that falls behind holds up nobody and later gets the
// newest state. Registering a channel again adds no subscriber: as in
// go-kit, it is sent the current state again before Register returns.
// Register must not be called from the goroutine that reads ch.
func (f *Feed) Register(ch chan<- sd.Event) {
	f.Enroll(ch)()
}

// Enroll is Register without its wait for ch to be sent the current state:
// it returns that wait, for a caller that orders registrations under a
// lock of its own and must not wait for a reader under it.
func (f *Feed) Enroll(ch chan<- sd.Event) (wait func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped {
		wait = f.events.register(ch, f.valuesLocked, f.err, f.currentEvent)
	}
	if wait == nil {
		wait = func() {}
	}
	return wait
}

// Deregister removes ch; nothing is sent to it after Deregister returns.
func (f *Feed) Deregister(ch chan<- sd.Event) {
	f.mu.Lock()
	s := f.events.deregister(ch)
	f.mu.Unlock()
	if s != nil {
		s.stop()
	}
}

// State returns the current go-kit state: the sorted distinct values and
// the error, if etcd cannot be read.
func (f *Feed) State() sd.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.events.kept() {
		ev, _ := f.events.current()
		return ev
	}
	return sd.Event{Instances: f.sortedValuesLocked(), Err: f.err}
}

// currentEvent is the go-kit state a subscriber sends, and its number.
func (f *Feed) currentEvent() (sd.Event, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.events.current()
}

// valuesLocked lists every key's value, with repeats, unsorted.
func (f *Feed) valuesLocked() []string {
	out := make([]string, 0, len(f.state)-f.hidden)
	for _, e := range f.state {
		if e.visible() {
			out = append(out, e.value)
		}
	}
	return out
}

func (f *Feed) sortedValuesLocked() []string {
	vs := f.valuesLocked()
	slices.Sort(vs)
	return slices.Compact(vs)
}
