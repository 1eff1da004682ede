package history

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
)

// syncWithin bounds how long a check waits for the history to catch up.
const syncWithin = 15 * time.Second

// tally is what the checker counts over every scenario of a test.
type tally struct {
	mu         sync.Mutex
	events     int
	states     map[string]int // consumer kind → states checked
	faults     map[string]int // fault kind → injected
	recoveries map[string]int // what the consumers' pipelines logged → times
	violations int
}

func newTally() *tally {
	return &tally{states: make(map[string]int), faults: make(map[string]int), recoveries: make(map[string]int)}
}

// recoveryLogs are the pipeline's log messages that show a fault reached
// it; the summary counts them, to show what the faults did.
var recoveryLogs = map[string]string{
	"watch history compacted, reading a fresh snapshot":   "resync after compaction",
	"watch broken, resuming":                              "watch broken (no leader, closed by etcd)",
	"etcd unreachable, the watch resumes when it answers": "watch cut off (etcd unreachable)",
	"watch resumed and caught up":                         "resumed without a snapshot",
}

// logger counts the recoveryLogs the library logs, and drops the rest.
func (c *tally) logger() log.Logger {
	return log.LoggerFunc(func(kv ...any) error {
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i] != "msg" {
				continue
			}
			if what, ok := recoveryLogs[fmt.Sprint(kv[i+1])]; ok {
				c.add(c.recoveries, what, 1)
			}
		}
		return nil
	})
}

func (c *tally) add(what map[string]int, key string, n int) {
	c.mu.Lock()
	what[key] += n
	c.mu.Unlock()
}

func (c *tally) summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	list := func(m map[string]int) string {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprintf("history: %d events recorded; states checked: %s; faults injected: %s; pipelines recovered: %s; violations: %d",
		c.events, list(c.states), list(c.faults), list(c.recoveries), c.violations)
}

// checker checks the states of one scenario's consumers against its
// history, and reports each violation with the scenario's seed.
type checker struct {
	t      testing.TB
	seed   int64
	prefix string
	h      *history
	tally  *tally

	mu        sync.Mutex
	consumers []*consumer
}

func (k *checker) violate(c *consumer, format string, args ...any) {
	k.tally.mu.Lock()
	k.tally.violations++
	k.tally.mu.Unlock()
	c.mu.Lock()
	c.violations++
	n := c.violations
	c.mu.Unlock()
	if n <= 3 { // the first ones tell the story; the rest are counted
		k.t.Errorf("VIOLATION seed %d, consumer %s: %s", k.seed, c.name, fmt.Sprintf(format, args...))
	}
}

// consumer is one consumer's delivered states. Its state is either a list
// of values (an sd.Event, a resolver state, a routable set), from which
// the keys follow (see keyOf), or a map by key that it changes
// incrementally (the Feed, catalog.Watch).
type consumer struct {
	k    *checker
	name string
	kind string // counted under

	mu         sync.Mutex
	values     []string          // the last list delivered
	state      map[string]string // the state of an incremental consumer
	hash       uint64            // of the last state
	idx        int               // the history state the last check matched; -1 before
	rev        int64             // the last revision the consumer named
	violations int
}

func (k *checker) consumer(name, kind string) *consumer {
	c := &consumer{k: k, name: name, kind: kind, idx: -1, state: make(map[string]string)}
	k.mu.Lock()
	k.consumers = append(k.consumers, c)
	k.mu.Unlock()
	return c
}

// keyOf returns the key whose value v is: every value written is the key's
// last segment, a dot, a number no other write uses, and ":9000".
func (k *checker) keyOf(v string) string {
	if i := strings.IndexByte(v, '.'); i >= 0 {
		return k.prefix + v[:i]
	}
	return k.prefix + v
}

// setValues makes values the consumer's state and reports whether it
// changed.
func (c *consumer) setValues(values []string) bool {
	var hash uint64
	for _, v := range values {
		hash += kvHash(c.k.keyOf(v), v)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := hash != c.hash || c.idx < 0
	c.values, c.state, c.hash = values, nil, hash
	return changed
}

func (c *consumer) reset() {
	c.mu.Lock()
	c.state, c.hash = make(map[string]string), 0
	c.mu.Unlock()
}

func (c *consumer) put(key, value string) {
	c.mu.Lock()
	if old, ok := c.state[key]; ok {
		c.hash -= kvHash(key, old)
	}
	c.state[key] = value
	c.hash += kvHash(key, value)
	c.mu.Unlock()
}

func (c *consumer) del(key string) {
	c.mu.Lock()
	if old, ok := c.state[key]; ok {
		c.hash -= kvHash(key, old)
		delete(c.state, key)
	}
	c.mu.Unlock()
}

// snapshot returns a copy of the consumer's state, for a diff.
func (c *consumer) snapshot() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != nil {
		return maps.Clone(c.state)
	}
	out := make(map[string]string, len(c.values))
	for _, v := range c.values {
		out[c.k.keyOf(v)] = v
	}
	return out
}

// doubles names the keys for which the last list delivered holds more
// than one value (a mixture that snapshot cannot show), or returns "".
func (c *consumer) doubles() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	byKey := make(map[string][]string, len(c.values))
	var keys []string
	for _, v := range c.values {
		k := c.k.keyOf(v)
		if byKey[k] = append(byKey[k], v); len(byKey[k]) == 2 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys[:min(len(keys), 5)] {
		parts = append(parts, fmt.Sprintf("%s=%v", k, byKey[k]))
	}
	return fmt.Sprintf("; %d keys with more than one value: %s", len(keys), strings.Join(parts, ", "))
}

func (c *consumer) current() (uint64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hash, c.idx
}

// check checks the consumer's state as delivered now: it must be etcd's
// state at some revision no older than the one it matched before.
func (c *consumer) check() {
	k, h := c.k, c.k.h
	hash, from := c.current()
	from = max(from, 0)
	i, ok := h.match(hash, from)
	if !ok {
		if err := h.syncNow(syncWithin); err != nil {
			k.violate(c, "cannot check a state: %v", err)
			return
		}
		i, ok = h.match(hash, from)
	}
	k.tally.add(k.tally.states, c.kind, 1)
	if !ok {
		lo, _ := h.rev(from)
		last := h.last()
		_, hi := h.rev(last)
		if j, older := h.match(hash, 0); older {
			a, b := h.rev(j)
			k.violate(c, "state is etcd's at revisions %d..%d only, older than revision %d it delivered before", a, b, lo)
			return
		}
		k.violate(c, "state is etcd's at no revision from %d to %d; against revision %d: %s",
			lo, hi, hi, h.diff(c.snapshot(), last)+c.doubles())
		return
	}
	c.mu.Lock()
	c.idx = i
	c.mu.Unlock()
}

// checkAt checks the consumer's state as delivered now, which it says is
// etcd's state at revision rev: it must be exactly that.
func (c *consumer) checkAt(rev int64) {
	k, h := c.k, c.k.h
	c.mu.Lock()
	prev := c.rev
	c.rev = max(c.rev, rev)
	c.mu.Unlock()
	if rev < prev {
		k.violate(c, "revision %d is older than revision %d it delivered before", rev, prev)
	}
	if err := h.syncTo(rev, syncWithin); err != nil {
		k.violate(c, "cannot check the state at revision %d: %v", rev, err)
		return
	}
	k.tally.add(k.tally.states, c.kind, 1)
	i := h.at(rev)
	hash, _ := c.current()
	if h.hashOf(i) != hash {
		also := "no revision"
		if j, ok := h.match(hash, 0); ok {
			a, b := h.rev(j)
			also = fmt.Sprintf("revisions %d..%d", a, b)
		}
		k.violate(c, "state said to be at revision %d is etcd's at %s; against revision %d: %s",
			rev, also, rev, h.diff(c.snapshot(), i)+c.doubles())
		return
	}
	c.mu.Lock()
	c.idx = i
	c.mu.Unlock()
}

// converge waits until every consumer holds etcd's current state, and
// reports those that do not within the deadline. The current state is
// read again while it waits: a registrar may still write.
func (k *checker) converge(within time.Duration) {
	k.mu.Lock()
	cs := slices.Clone(k.consumers)
	k.mu.Unlock()
	deadline := time.Now().Add(within)
	for {
		if err := k.h.syncNow(syncWithin); err != nil {
			k.t.Errorf("seed %d: %v", k.seed, err)
			return
		}
		last := k.h.last()
		final := k.h.hashOf(last)
		var behind []*consumer
		for _, c := range cs {
			if hash, _ := c.current(); hash != final {
				behind = append(behind, c)
			}
		}
		if len(behind) == 0 {
			return
		}
		if time.Now().After(deadline) {
			rev, _ := k.h.rev(last)
			for _, c := range behind {
				k.violate(c, "did not reach etcd's final state (revision %d) within %v after writes stopped: %s",
					rev, within, k.h.diff(c.snapshot(), last)+c.doubles())
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
