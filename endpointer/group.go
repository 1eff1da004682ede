package endpointer

import (
	"math/bits"
	"slices"
	"sync/atomic"
)

// A group's candidates live in fixed-size blocks; a change copies the one
// or two blocks it touches and the block index, O(blockSize + n/blockSize),
// about O(sqrt n) for the group sizes we serve (128 candidates per block:
// 8 blocks at 1,000 instances, 782 at 100,000).
const (
	blockShift = 7
	blockSize  = 1 << blockShift
	blockMask  = blockSize - 1
)

// block is a run of blockSize candidates. A published block is immutable.
type block struct {
	ms [blockSize]*member
	// For Weighted only: the alias table of the weights of ms, and their
	// total.
	alias *aliasTable
	total uint64
	// batch is the writer's batch that made this copy: while that batch
	// runs the block is not yet published and is changed in place.
	batch uint64
}

// slots is one published state of a group's candidates: immutable, read by
// picks without a lock.
type slots struct {
	n      uint64
	magic  uint64 // for fastmod by n
	blocks []*block
	// top draws a block in proportion to its total weight, for Weighted
	// only.
	top *aliasTable
}

func (s *slots) at(i uint64) *member {
	return s.blocks[i>>blockShift].ms[i&blockMask]
}

// group is the set of candidates of one selector. Picks load its slots;
// the writer (holding Endpointer.mu) edits a private draft during a batch
// and publishes it at the end.
type group struct {
	cur atomic.Pointer[slots]
	// sel is what a compound group matches; nil for the other groups.
	sel *selector
	// pos is each member's position; nil for the group of all instances,
	// whose positions live in member.allPos.
	pos   map[*member]uint64
	draft *slots
	// next is the round-robin counter, on a cache line of its own so that
	// its writes do not evict the read-only fields above from other cores.
	_    [64]byte
	next atomic.Uint64
	_    [56]byte
}

func newGroup(r *rng, sel *selector, indexed bool) *group {
	g := &group{sel: sel}
	if indexed {
		g.pos = make(map[*member]uint64)
	}
	g.cur.Store(&slots{})
	g.next.Store(r.next())
	return g
}

// len returns the number of candidates, counting the draft's changes.
func (g *group) len() uint64 {
	if g.draft != nil {
		return g.draft.n
	}
	return g.cur.Load().n
}

// edit returns the draft of batch w.batch, making it on the first change.
func (g *group) edit(w *writer) *slots {
	if g.draft == nil {
		cur := g.cur.Load()
		g.draft = &slots{n: cur.n, blocks: slices.Clone(cur.blocks)}
		w.dirty = append(w.dirty, g)
	}
	return g.draft
}

// block returns block i of the draft d, copied if it is published.
func (d *slots) block(i uint64, w *writer) *block {
	b := d.blocks[i]
	if b.batch != w.batch {
		c := &block{ms: b.ms, batch: w.batch}
		d.blocks[i] = c
		b = c
	}
	return b
}

func (g *group) position(m *member) uint64 {
	if g.pos == nil {
		return m.allPos
	}
	return g.pos[m]
}

func (g *group) place(m *member, i uint64) {
	if g.pos == nil {
		m.allPos = i
	} else {
		g.pos[m] = i
	}
}

// add appends m: O(blockSize) for the block copy, once per batch.
func (g *group) add(m *member, w *writer) {
	d := g.edit(w)
	i := d.n
	if i>>blockShift == uint64(len(d.blocks)) {
		d.blocks = append(d.blocks, &block{batch: w.batch})
	}
	d.block(i>>blockShift, w).ms[i&blockMask] = m
	g.place(m, i)
	d.n++
}

// remove takes m out by moving the last candidate into its place.
func (g *group) remove(m *member, w *writer) {
	d := g.edit(w)
	i, last := g.position(m), d.n-1
	lb := d.block(last>>blockShift, w)
	moved := lb.ms[last&blockMask]
	lb.ms[last&blockMask] = nil
	if i != last {
		d.block(i>>blockShift, w).ms[i&blockMask] = moved
		g.place(moved, i)
	}
	if g.pos != nil {
		delete(g.pos, m)
	}
	d.n--
	if d.n&blockMask == 0 {
		d.blocks[len(d.blocks)-1] = nil
		d.blocks = d.blocks[:d.n>>blockShift]
	}
}

// publish makes the draft the group's slots. For Weighted it rebuilds the
// alias tables of the blocks copied in this batch, O(blockSize) each, and
// the one over blocks, O(n/blockSize).
func (g *group) publish(w *writer) {
	d := g.draft
	g.draft = nil
	if d.n > 0 {
		d.magic = ^uint64(0)/d.n + 1
	}
	if w.weighted && d.n > 0 {
		var weights [blockSize]uint64
		totals := make([]uint64, len(d.blocks))
		for i, b := range d.blocks {
			if b.batch == w.batch {
				count := min(blockSize, d.n-uint64(i)<<blockShift)
				b.total = 0
				for j := range count {
					weights[j] = b.ms[j].weight()
					b.total += weights[j]
				}
				b.alias = newAliasTable(weights[:count])
			}
			totals[i] = b.total
		}
		d.top = newAliasTable(totals)
	}
	g.cur.Store(d)
}

// index returns the position of a candidate of s chosen by st. s must not
// be empty.
func (g *group) index(s *slots, st Strategy, r *rng) uint64 {
	n := s.n
	switch st {
	case RoundRobin:
		return fastmod(uint32(g.next.Add(1)), s.magic, n)
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
		if s.at(j).entry.Load().inflight.Load() < s.at(i).entry.Load().inflight.Load() {
			return j
		}
		return i
	default: // Weighted
		return s.weighted(r.next(), r.next())
	}
}

// weighted maps two 64-bit random values to a position drawn in proportion
// to the weights, in constant time: x draws a block by its total weight,
// y a candidate within it by its weight.
func (s *slots) weighted(x, y uint64) uint64 {
	bi := s.top.pick(x)
	return bi<<blockShift | s.blocks[bi].alias.pick(y)
}

// pick returns a candidate of s chosen by st that is not ejected and not
// avoid, when s has one (see repick). s must not be empty. avoid may be
// nil.
func (g *group) pick(s *slots, st Strategy, r *rng, avoid *entry) *entry {
	i := g.index(s, st, r)
	e := s.at(i).entry.Load()
	if !e.ejected() && (e != avoid || s.n == 1) {
		return e
	}
	return g.repick(s, st, r, avoid, i)
}

// repickDraws is how many more draws by the strategy repick makes before
// it scans the candidates.
const repickDraws = 4

// repick is pick's slow path, when the candidate at first is ejected or is
// avoid (the instance that just failed). It draws again by the strategy a
// few times, then scans from a random place, for a candidate that is
// neither; failing that, it takes avoid if avoid is not ejected. When
// every candidate is ejected it ignores ejection, as Envoy's panic mode
// does: a pick never fails for it, and the share of ejected addresses is
// capped over all of them, not per group.
func (g *group) repick(s *slots, st Strategy, r *rng, avoid *entry, first uint64) *entry {
	for range repickDraws {
		if e := s.at(g.index(s, st, r)).entry.Load(); e != avoid && !e.ejected() {
			return e
		}
	}
	n := s.n
	start := bounded(uint32(r.next()), n)
	var back *entry
	for k := range n {
		e := s.at((start + k) % n).entry.Load()
		switch {
		case e.ejected():
		case e != avoid:
			return e
		default:
			back = e
		}
	}
	if back != nil {
		return back
	}
	if e := s.at(first).entry.Load(); e != avoid || n == 1 {
		return e
	}
	// Another candidate, uniformly, so that a retry never lands on the
	// instance that just failed.
	return s.at((first + 1 + bounded(uint32(r.next()), n-1)) % n).entry.Load()
}

// fastmod returns a % n for magic = 2^64/n rounded up, with two
// multiplications instead of a division (Lemire, Kaser and Kurz). The
// round-robin counter is taken as 32 bits, so the turn skips once every
// 2^32 picks.
func fastmod(a uint32, magic, n uint64) uint64 {
	hi, _ := bits.Mul64(magic*uint64(a), n)
	return hi
}
