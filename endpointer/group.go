package endpointer

import (
	"math/bits"
	"sync/atomic"

	"github.com/go-kit/kit/endpoint"
)

// group is the precomputed set of candidates of one selector in one
// snapshot, ready for constant-time picks.
type group struct {
	entries []*entry
	// eps holds each entry's endpoint, so that Pick returns one without
	// touching the entry's own cache line.
	eps   []endpoint.Endpoint
	magic uint64      // for fastmod by len(entries)
	alias *aliasTable // Weighted only
	// next is the round-robin counter, on a cache line of its own so that
	// its writes do not evict the read-only fields above from other cores.
	_    [64]byte
	next atomic.Uint64
	_    [56]byte
}

// newGroup builds the group of members for the strategy st.
func newGroup(members []*member, st Strategy, r *rng) *group {
	n := len(members)
	g := &group{entries: make([]*entry, n), eps: make([]endpoint.Endpoint, n)}
	for i, m := range members {
		g.entries[i] = m.entry
		g.eps[i] = m.entry.endpoint
	}
	if n > 0 {
		g.magic = ^uint64(0)/uint64(n) + 1
	}
	g.next.Store(r.next())
	if st == Weighted {
		weights := make([]int, n)
		for i, m := range members {
			weights[i] = m.inst.EffectiveWeight()
		}
		g.alias = newAliasTable(weights)
	}
	return g
}

// index returns the position of a candidate chosen by st. The group must
// not be empty.
func (g *group) index(st Strategy, r *rng) uint64 {
	n := uint64(len(g.entries))
	if st == RoundRobin {
		return fastmod(uint32(g.next.Add(1)), g.magic, n)
	}
	switch st {
	case Random:
		return bounded(uint32(r.next()), n)
	case LeastLoaded:
		if n == 1 {
			return 0
		}
		x := r.next()
		i := bounded(uint32(x), n)
		j := bounded(uint32(x>>32), n-1)
		if j >= i {
			j++
		}
		if g.entries[j].inflight.Load() < g.entries[i].inflight.Load() {
			return j
		}
		return i
	default: // Weighted
		return g.alias.pick(r.next())
	}
}

// pick returns a candidate chosen by st, other than avoid when the group
// has another one. The group must not be empty.
func (g *group) pick(st Strategy, r *rng, avoid *entry) *entry {
	i := g.index(st, r)
	n := uint64(len(g.entries))
	if e := g.entries[i]; e != avoid || n == 1 {
		return e
	}
	// Another candidate, uniformly, so that a retry never lands on the
	// instance that just failed.
	return g.entries[(i+1+bounded(uint32(r.next()), n-1))%n]
}

// fastmod returns a % n for magic = 2^64/n rounded up, with two
// multiplications instead of a division (Lemire, Kaser and Kurz). The
// round-robin counter is taken as 32 bits, so the turn skips once every
// 2^32 picks.
func fastmod(a uint32, magic, n uint64) uint64 {
	hi, _ := bits.Mul64(magic*uint64(a), n)
	return hi
}
