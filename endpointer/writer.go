package endpointer

import (
	"cmp"
	"slices"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log/level"

	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// writer is the Endpointer's state behind its lock. Every change, from a
// Feed or from an sd.Event, goes through put and release; commit then
// routes what changed and publishes the groups that changed.
//
// Costs per change, n instances: O(1) map work, O(blockSize + n/blockSize)
// per group the instance belongs to (all, its version, each metadata pair,
// version+pair, the compound groups it matches; see group.go), plus what
// subsetting adds (see subset.go). An sd.Event is a full list: turning it
// into changes is O(n), but applying them is not.
type writer struct {
	values map[string]*member // by value
	// entries holds the endpoints by address, except that of a routed plain
	// member (its value is its address), found through values: most
	// deployments register plain addresses, and then need no second map.
	entries  map[string]*entry
	failed   map[*member]struct{} // the factory failed: tried again on each batch
	bad      map[string]struct{}  // sd.Event only: values that did not parse, logged once
	versions map[string]int       // routed members per version
	compound []*group             // registered compound groups, at most maxCompound
	subsets  *subsets             // nil without WithSubset
	weighted bool

	batch    uint64
	touched  []*member // members to route or unroute at commit
	dirty    []*group  // groups with a draft
	leaving  []leaving // entries whose last member left in this batch
	retiring []*entry  // retired, closing when their calls return
	sorted   []*member // routed members by value, built on demand; nil after a change
}

// maxCompound bounds how many groups of compound selectors (two metadata
// pairs or more) are kept up to date; past it a compound selector's
// candidates are computed on each pick.
const maxCompound = 256

// apply applies one batch of a Feed subscription.
func (e *Endpointer) apply(b pipeline.Batch) {
	if b.Rev == 0 && !b.Reset && len(b.Changes) == 0 && b.Err == nil {
		return // nothing was pending
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed.Load() {
		return
	}
	e.noteErr(b.Err)
	e.batch++
	if b.Reset {
		// The batch is the whole content: forget what was there.
		for _, m := range e.values {
			m.refs = 1
			e.release(m)
		}
	}
	for i := range b.Changes {
		ch := &b.Changes[i]
		// Prev is the value this subscription last saw for the key, so
		// the members by value are all the state a change needs.
		var old *member
		if ch.Prev != "" {
			old = e.values[ch.Prev]
		}
		switch ch.Op {
		case pipeline.Put:
			if old != nil && old.value == ch.Value {
				e.reweigh(old, ch.Instance.Weight)
				continue
			}
			e.acquire(ch.Value, &ch.Instance, old)
			if old != nil {
				e.release(old)
			}
		case pipeline.Delete:
			if old != nil {
				e.release(old)
			}
		}
	}
	e.commit()
	if h := e.cfg.metrics.UpdateSeconds; h != nil && !b.At.IsZero() && b.Err == nil {
		h.Observe(time.Since(b.At).Seconds())
	}
}

// reweigh gives m the weight of a change that kept its value: an overlay
// of the operator's properties changes the weight of an instance, never
// its value. Keys holding the same value share one member, whose weight is
// that of the last such change. A member whose weight changes is routed
// again at commit, through the same endpoint.
func (e *Endpointer) reweigh(m *member, weight int) {
	in := m.instance()
	if in.Weight == weight {
		return
	}
	if m.routed {
		e.unroute(m) // with the groups of the old weight
	}
	in.Weight = weight
	if in.IsPlain(m.value) {
		m.inst = nil
	} else {
		m.inst = &in
	}
	e.touch(m)
}

// update applies one sd.Event from an Instancer without a Feed: the
// difference from the values it had is applied as changes. A value that
// replaces one of the same identity and version takes its subset place.
func (e *Endpointer) update(ev sd.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed.Load() {
		return
	}
	e.noteErr(ev.Err)
	if ev.Err != nil {
		return
	}
	e.batch++
	seen := make(map[string]struct{}, len(ev.Instances))
	for _, v := range ev.Instances {
		seen[v] = struct{}{}
	}
	// The departed members by version and identity, to pair with a new
	// value. Several values may share both (a plain address and a JSON
	// value of it, or two weights of one ID): each must be released.
	var gone map[string][]*member
	for v, m := range e.values {
		if _, ok := seen[v]; !ok {
			if gone == nil {
				gone = make(map[string][]*member)
			}
			id := m.version() + "\x00" + m.identity()
			gone[id] = append(gone[id], m)
		}
	}
	for v := range e.bad {
		if _, ok := seen[v]; !ok {
			delete(e.bad, v)
		}
	}
	for _, v := range ev.Instances {
		if _, ok := e.values[v]; ok {
			continue
		}
		if _, ok := e.bad[v]; ok {
			continue
		}
		inst, err := instance.Parse(v)
		if err != nil {
			level.Warn(e.logger).Log("msg", "instance value skipped", "err", err)
			e.bad[v] = struct{}{}
			continue
		}
		id := inst.Version + "\x00" + inst.ID
		if inst.ID == "" {
			id = inst.Version + "\x00" + inst.Address
		}
		var prev *member
		if ms := gone[id]; len(ms) > 0 {
			prev = ms[len(ms)-1]
			gone[id] = ms[:len(ms)-1]
		}
		e.acquire(v, &inst, prev)
		if prev != nil {
			e.release(prev)
		}
	}
	for _, ms := range gone {
		for _, m := range ms {
			e.release(m)
		}
	}
	e.commit()
}

// noteErr records the source's error, logging each new one once.
func (e *Endpointer) noteErr(err error) {
	if err == nil {
		e.srcErr.Store(nil)
		return
	}
	if last := e.sourceErr(); last == nil || last.Error() != err.Error() {
		level.Warn(e.logger).Log("msg", "service discovery failed; keeping the last instances", "err", err)
	}
	e.srcErr.Store(&err)
}

// acquire counts one more holder of value and returns its member. A new
// member that replaces prev (whose last holder is about to go) with the
// same identity and version takes prev's subset place.
func (e *Endpointer) acquire(value string, inst *instance.Instance, prev *member) *member {
	if m := e.values[value]; m != nil {
		m.refs++
		return m
	}
	m := &member{value: value, refs: 1}
	if !inst.IsPlain(value) {
		in := *inst
		m.inst = &in
	}
	e.values[value] = m
	switch {
	case e.subsets == nil:
		e.touch(m)
	case prev != nil && prev.refs == 1 && sameSlot(prev, m):
		e.subsets.replace(prev, m)
	default:
		e.subsets.add(m)
	}
	return m
}

// release counts one holder less of m and forgets m after the last.
func (e *Endpointer) release(m *member) {
	m.refs--
	if m.refs > 0 {
		return
	}
	delete(e.values, m.value)
	if e.subsets != nil {
		e.subsets.remove(m)
	}
	e.touch(m)
}

func (e *Endpointer) touch(m *member) {
	if !m.touched {
		m.touched = true
		e.touched = append(e.touched, m)
	}
}

func (e *Endpointer) wanted(m *member) bool {
	return m.refs > 0 && (e.subsets == nil || m.inSubset)
}

// commit routes and unroutes the touched members, tries the factory again
// for those it failed, publishes the changed groups, then retires the
// endpoints no member uses any more.
func (e *Endpointer) commit() {
	for m := range e.failed {
		if !m.touched {
			e.route(m)
		}
	}
	// Unroute first, so that an address that moves from one value to
	// another in the batch keeps its endpoint.
	for _, m := range e.touched {
		if !e.wanted(m) {
			if m.routed {
				e.unroute(m)
			}
			delete(e.failed, m)
		}
	}
	for _, m := range e.touched {
		m.touched = false
		if !m.routed && e.wanted(m) {
			e.route(m)
		}
	}
	clear(e.touched)
	e.touched = e.touched[:0]
	if len(e.dirty) == 0 {
		return
	}
	for _, g := range e.dirty {
		g.publish(&e.writer)
	}
	clear(e.dirty)
	e.dirty = e.dirty[:0]
	e.sorted = nil
	e.eps.Store(nil)
	for _, l := range e.leaving {
		if l.en.refs == 0 {
			if e.entries[l.address] == l.en {
				delete(e.entries, l.address)
			}
			l.en.retire()
			e.retiring = append(e.retiring, l.en)
		}
	}
	clear(e.leaving)
	e.leaving = e.leaving[:0]
	e.retiring = slices.DeleteFunc(e.retiring, (*entry).isClosed)
	if cap(e.touched) > 1024 { // a large batch's list is not kept for the next
		e.touched = nil
	}
}

// leaving is an entry whose last member left, with its address.
type leaving struct {
	address string
	en      *entry
}

// entryFor returns the endpoint of addr, nil when it has none.
func (e *Endpointer) entryFor(addr string) *entry {
	if en := e.entries[addr]; en != nil {
		return en
	}
	if m := e.values[addr]; m != nil && m.inst == nil && m.routed {
		return m.entry.Load()
	}
	return nil
}

// route gives m its endpoint, making it if its address has none, and adds
// it to its groups. A factory error leaves m out until the next batch.
func (e *Endpointer) route(m *member) {
	addr := m.address()
	en := e.entryFor(addr)
	if en == nil {
		ep, closer, err := e.factory(addr)
		if err != nil {
			level.Warn(e.logger).Log("msg", "factory failed; instance skipped until the next change", "address", addr, "err", err)
			e.failed[m] = struct{}{}
			return
		}
		if e.cfg.middleware != nil {
			ep = e.cfg.middleware(ep)
		}
		en = newEntry(addr, ep, closer, e.od, &e.logger)
	}
	if m.inst != nil {
		e.entries[addr] = en // shared with a plain member, it must be found here too
	}
	delete(e.failed, m)
	en.refs++
	if en.refs == 1 && e.od != nil {
		e.od.live.Add(1)
	}
	m.entry.Store(en)
	m.routed = true
	e.all.add(m, &e.writer)
	e.eachGroup(m, true)
	v := m.version()
	e.versions[v]++
	if e.versions[v] == 1 {
		e.publishVersions()
	}
}

// unroute takes m out of its groups; its endpoint leaves at commit if no
// member uses it any more.
func (e *Endpointer) unroute(m *member) {
	m.routed = false
	e.all.remove(m, &e.writer)
	e.eachGroup(m, false)
	en := m.entry.Load()
	en.refs--
	if en.refs == 0 {
		if e.od != nil {
			e.od.live.Add(-1)
		}
		addr := m.address()
		e.leaving = append(e.leaving, leaving{address: addr, en: en})
		// Until commit, a member routed in this batch with the same
		// address takes the endpoint over instead of making another.
		e.entries[addr] = en
	}
	v := m.version()
	e.versions[v]--
	if e.versions[v] == 0 {
		delete(e.versions, v)
		e.publishVersions()
	}
}

// eachGroup adds m to, or removes it from, the groups of its version, of
// each metadata pair and of both, and the compound groups it matches. A
// group is created with its first member and dropped with its last; a
// compound group stays once registered.
func (e *Endpointer) eachGroup(m *member, add bool) {
	if m.inst == nil {
		return // a plain address has no version, no metadata
	}
	v := m.inst.Version
	if v != "" {
		e.join(groupKey(v, nil), m, add)
	}
	for key, value := range m.inst.Metadata {
		pair := [][2]string{{key, value}}
		e.join(groupKey("", pair), m, add)
		if v != "" {
			e.join(groupKey(v, pair), m, add)
		}
	}
	for _, g := range e.compound {
		if g.sel.matches(m.inst) {
			if add {
				g.add(m, &e.writer)
			} else {
				g.remove(m, &e.writer)
			}
		}
	}
}

func (e *Endpointer) join(key string, m *member, add bool) {
	g, ok := e.groups.load(key, keyHash(key))
	if !add {
		g.remove(m, &e.writer)
		if g.len() == 0 {
			e.groups.delete(key)
		}
		return
	}
	if !ok {
		g = newGroup(e.rng, nil, true)
		e.groups.store(key, g)
	}
	g.add(m, &e.writer)
}

func (e *Endpointer) publishVersions() {
	vs := make([]string, 0, len(e.versions))
	for v := range e.versions {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	e.versionList.Store(&vs)
}

// compoundGroup returns the group of a compound selector, registering it
// on first use, O(n), while fewer than maxCompound are registered; past
// that it is computed for this pick alone.
func (e *Endpointer) compoundGroup(sel *selector) *group {
	e.mu.Lock()
	defer e.mu.Unlock()
	if g, ok := e.groups.load(sel.key, sel.hash); ok {
		return g
	}
	g := newGroup(e.rng, sel, true)
	e.batch++
	all := e.all.cur.Load()
	for i := range all.n {
		if m := all.at(i); sel.matches(m.inst) {
			g.add(m, &e.writer)
		}
	}
	if g.draft != nil {
		g.publish(&e.writer)
		clear(e.dirty)
		e.dirty = e.dirty[:0]
	}
	if len(e.compound) < maxCompound && !e.closed.Load() {
		e.compound = append(e.compound, g)
		e.groups.store(sel.key, g)
	}
	return g
}

// sortedMembers returns the routed members by value, built once per state.
func (e *Endpointer) sortedMembers() []*member {
	if e.sorted == nil {
		e.sorted = make([]*member, 0, len(e.values))
		for _, m := range e.values {
			if m.routed {
				e.sorted = append(e.sorted, m)
			}
		}
		slices.SortFunc(e.sorted, func(a, b *member) int { return cmp.Compare(a.value, b.value) })
	}
	return e.sorted
}
