package instance

import (
	"slices"
	"sort"
	"sync"

	"github.com/go-kit/kit/sd"
)

// Change is one key's new value, or its removal, applied to a Cache.
type Change struct {
	Key    string
	Value  string
	Delete bool
}

// Cache holds the instances under a watched prefix, keyed by etcd key, and
// publishes them to subscribers as go-kit sd.Events.
//
// The published instance list is the set of distinct values, sorted. Each
// published slice is immutable: subscribers may keep it but must not modify
// it. A Cache is safe for concurrent use.
type Cache struct {
	mu      sync.Mutex
	byKey   map[string]string // key → value
	counts  map[string]int    // value → number of keys holding it
	state   sd.Event          // last published state
	seq     uint64            // number of the last published state
	subs    map[chan<- sd.Event]*subscriber
	stopped bool
}

// NewCache returns an empty Cache with no subscribers.
func NewCache() *Cache {
	return &Cache{
		byKey:  make(map[string]string),
		counts: make(map[string]int),
		state:  sd.Event{Instances: []string{}},
		subs:   make(map[chan<- sd.Event]*subscriber),
	}
}

// Replace sets the whole content of the cache, as read in a snapshot, clears
// any error, and publishes the result if it differs from the last state.
func (c *Cache) Replace(entries map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byKey = make(map[string]string, len(entries))
	c.counts = make(map[string]int, len(entries))
	for k, v := range entries {
		c.byKey[k] = v
		c.counts[v]++
	}
	c.publishLocked(sd.Event{Instances: c.sortedLocked()})
}

// Apply applies a batch of changes by key, clears any error, and publishes
// one event for the whole batch if the instance set changed (or an error was
// cleared). The new instance list is built in one pass over the old one,
// O(instances + changes·log changes), never by a re-read of the source or a
// re-sort.
func (c *Cache) Apply(changes []Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// net is the batch's effect per value: +1 appears, -1 disappears; a
	// value that disappears and comes back in one batch nets to 0.
	net := make(map[string]int, 2*len(changes))
	for _, ch := range changes {
		old, had := c.byKey[ch.Key]
		if had && !ch.Delete && old == ch.Value {
			continue
		}
		if ch.Delete && !had {
			continue
		}
		if had {
			if c.release(old) {
				net[old]--
			}
		}
		if ch.Delete {
			delete(c.byKey, ch.Key)
			continue
		}
		c.byKey[ch.Key] = ch.Value
		c.counts[ch.Value]++
		if c.counts[ch.Value] == 1 {
			net[ch.Value]++
		}
	}
	var adds, removes []string
	for v, d := range net {
		switch {
		case d > 0:
			adds = append(adds, v)
		case d < 0:
			removes = append(removes, v)
		}
	}
	switch {
	case len(adds) > 0 || len(removes) > 0:
		slices.Sort(adds)
		slices.Sort(removes)
		c.publishChangedLocked(sd.Event{Instances: merge(c.state.Instances, removes, adds)})
	case c.state.Err != nil:
		c.publishChangedLocked(sd.Event{Instances: c.state.Instances})
	}
}

// merge returns a new sorted slice: old without removes, plus adds. removes
// are all in old and adds none of them; both are sorted. Runs of old are
// copied whole, so the cost is one pass of memory moves.
func merge(old, removes, adds []string) []string {
	out := make([]string, 0, len(old)-len(removes)+len(adds))
	i := 0 // next element of old to copy
	for len(removes) > 0 || len(adds) > 0 {
		if len(adds) == 0 || (len(removes) > 0 && removes[0] < adds[0]) {
			j, _ := slices.BinarySearch(old[i:], removes[0])
			out = append(out, old[i:i+j]...)
			i += j + 1 // skip the removed value
			removes = removes[1:]
			continue
		}
		j, _ := slices.BinarySearch(old[i:], adds[0])
		out = append(out, old[i:i+j]...)
		out = append(out, adds[0])
		i += j
		adds = adds[1:]
	}
	return append(out, old[i:]...)
}

// SetErr records that the source of the cache failed. Subscribers receive the
// error together with the last known instances, so they can keep serving;
// the event is sent once, not again for the same error text.
func (c *Cache) SetErr(err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.publishLocked(sd.Event{Instances: c.state.Instances, Err: err})
}

// State returns the last published state.
func (c *Cache) State() sd.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Len returns the number of keys in the cache.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byKey)
}

// Register adds ch as a subscriber and delivers the current state to it
// before returning, as go-kit's cache does. Later events are delivered by a
// goroutine owned by the cache: if ch is not read, only that goroutine
// waits, and when ch is read again it receives the latest state, not the
// backlog (intermediate states are coalesced). One caveat that Go's select
// makes unavoidable: if that goroutine was descheduled right as it committed
// to sending a state, the reader may get that one state first, and the
// latest right after. Registering a channel twice is a no-op. Register must
// not be called from the goroutine that reads ch.
func (c *Cache) Register(ch chan<- sd.Event) {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	if _, ok := c.subs[ch]; ok {
		c.mu.Unlock()
		return
	}
	s := newSubscriber(ch, c.state, c.seq)
	c.subs[ch] = s
	c.mu.Unlock()
	s.waitFirst()
}

// Deregister removes ch; nothing is sent to it after Deregister returns.
func (c *Cache) Deregister(ch chan<- sd.Event) {
	c.mu.Lock()
	s, ok := c.subs[ch]
	delete(c.subs, ch)
	c.mu.Unlock()
	if ok {
		s.stop()
	}
}

// Stop deregisters every subscriber and waits for their goroutines to end.
// Later Register calls are ignored.
func (c *Cache) Stop() {
	c.mu.Lock()
	c.stopped = true
	subs := c.subs
	c.subs = make(map[chan<- sd.Event]*subscriber)
	c.mu.Unlock()
	for _, s := range subs {
		s.stop()
	}
}

// release drops one holder of value v and reports whether none is left.
func (c *Cache) release(v string) bool {
	c.counts[v]--
	if c.counts[v] > 0 {
		return false
	}
	delete(c.counts, v)
	return true
}

func (c *Cache) sortedLocked() []string {
	out := make([]string, 0, len(c.counts))
	for v := range c.counts {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// publishLocked makes ev the current state and hands it to every subscriber,
// unless nothing a subscriber can see has changed.
func (c *Cache) publishLocked(ev sd.Event) {
	if sameEvent(c.state, ev) {
		return
	}
	c.publishChangedLocked(ev)
}

// publishChangedLocked publishes ev, known to differ from the current state,
// without the O(n) comparison.
func (c *Cache) publishChangedLocked(ev sd.Event) {
	c.state = ev
	c.seq++
	for _, s := range c.subs {
		s.offer(ev, c.seq)
	}
}

func sameEvent(a, b sd.Event) bool {
	if (a.Err == nil) != (b.Err == nil) {
		return false
	}
	if a.Err != nil && a.Err.Error() != b.Err.Error() {
		return false
	}
	return slices.Equal(a.Instances, b.Instances)
}
