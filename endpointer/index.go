package endpointer

import "sync/atomic"

// indexShards is how many immutable tables a groupIndex spreads its groups
// over.
const indexShards = 512

// groupIndex finds the group of a selector key without a lock or an
// allocation: one atomic load, then a probe of an open-addressing table by
// the key's 64-bit hash, which the selector computes once, and one
// comparison of the key. Each shard's table is immutable, rebuilt whole
// when a group of that shard appears or disappears (by the writer, under
// Endpointer.mu), so such a change costs about 1/512 of the groups;
// changes that keep the groups cost nothing here.
type groupIndex struct {
	shards [indexShards]atomic.Pointer[indexTable]
}

// indexTable is one shard: linear probing over a power-of-two number of
// slots, at most half full.
type indexTable struct {
	mask  uint64
	slots []indexSlot
	n     int
}

type indexSlot struct {
	hash uint64
	key  string
	g    *group // nil: the slot is free
}

// keyHash returns the hash a groupIndex files key under.
func keyHash(key string) uint64 {
	return mix64(hashString(fnvOffset, key))
}

// load returns the group of key, whose hash is h.
func (x *groupIndex) load(key string, h uint64) (*group, bool) {
	t := x.shards[h%indexShards].Load()
	if t == nil {
		return nil, false
	}
	for i := (h / indexShards) & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.g == nil {
			return nil, false
		}
		if s.hash == h && s.key == key {
			return s.g, true
		}
	}
}

// store adds or replaces the group of key. Writer only.
func (x *groupIndex) store(key string, g *group) {
	x.rebuild(keyHash(key), key, g)
}

// delete removes the group of key. Writer only.
func (x *groupIndex) delete(key string) {
	x.rebuild(keyHash(key), key, nil)
}

// rebuild publishes a new table for h's shard in which key maps to g, or
// is absent when g is nil.
func (x *groupIndex) rebuild(h uint64, key string, g *group) {
	shard := &x.shards[h%indexShards]
	var live []indexSlot
	if t := shard.Load(); t != nil {
		live = make([]indexSlot, 0, t.n+1)
		for _, s := range t.slots {
			if s.g != nil && (s.hash != h || s.key != key) {
				live = append(live, s)
			}
		}
	}
	if g != nil {
		live = append(live, indexSlot{hash: h, key: key, g: g})
	}
	if len(live) == 0 {
		shard.Store(nil)
		return
	}
	size := uint64(4)
	for size < 2*uint64(len(live)) {
		size *= 2
	}
	t := &indexTable{mask: size - 1, slots: make([]indexSlot, size), n: len(live)}
	for _, s := range live {
		i := (s.hash / indexShards) & t.mask
		for t.slots[i].g != nil {
			i = (i + 1) & t.mask
		}
		t.slots[i] = s
	}
	shard.Store(t)
}
