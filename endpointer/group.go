package endpointer

import "sync/atomic"

// group is the precomputed set of candidates of one selector in one
// snapshot, ready for constant-time picks.
type group struct {
	entries []*entry
	next    atomic.Uint64 // round-robin counter
	alias   *aliasTable   // Weighted only
}

// newGroup builds the group of members for the strategy st.
func newGroup(members []*member, st Strategy, r *rng) *group {
	g := &group{entries: make([]*entry, len(members))}
	for i, m := range members {
		g.entries[i] = m.entry
	}
	g.next.Store(r.next())
	if st == Weighted {
		weights := make([]int, len(members))
		for i, m := range members {
			weights[i] = m.inst.EffectiveWeight()
		}
		g.alias = newAliasTable(weights)
	}
	return g
}

// pick returns a candidate chosen by st, other than avoid when the group
// has another one. The group must not be empty.
func (g *group) pick(st Strategy, r *rng, avoid *entry) *entry {
	n := uint64(len(g.entries))
	if n == 1 {
		return g.entries[0]
	}
	var i uint64
	switch st {
	case Random:
		i = bounded(uint32(r.next()), n)
	case LeastLoaded:
		x := r.next()
		i = bounded(uint32(x), n)
		j := bounded(uint32(x>>32), n-1)
		if j >= i {
			j++
		}
		if g.entries[j].inflight.Load() < g.entries[i].inflight.Load() {
			i = j
		}
	case Weighted:
		i = g.alias.pick(r.next())
	default:
		i = g.next.Add(1) % n
	}
	if e := g.entries[i]; e != avoid {
		return e
	}
	// Another candidate, uniformly, so that a retry never lands on the
	// instance that just failed.
	return g.entries[(i+1+bounded(uint32(r.next()), n-1))%n]
}
