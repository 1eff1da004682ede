package endpointer

import (
	"cmp"
	"slices"
)

// subset keeps, for each version, the size members that rank highest for
// clientID by rendezvous hashing. The result is sorted by value.
func subset(members []*member, size int, clientID string) []*member {
	byVersion := make(map[string][]*member)
	for _, m := range members {
		byVersion[m.inst.Version] = append(byVersion[m.inst.Version], m)
	}
	seed := hashString(fnvOffset, clientID)
	out := make([]*member, 0, min(len(members), size*len(byVersion)))
	type scored struct {
		score uint64
		m     *member
	}
	for _, ms := range byVersion {
		if len(ms) <= size {
			out = append(out, ms...)
			continue
		}
		s := make([]scored, len(ms))
		for i, m := range ms {
			s[i] = scored{rendezvousScore(seed, identity(m)), m}
		}
		slices.SortFunc(s, func(a, b scored) int {
			if c := cmp.Compare(b.score, a.score); c != 0 {
				return c
			}
			return cmp.Compare(a.m.value, b.m.value)
		})
		for _, x := range s[:size] {
			out = append(out, x.m)
		}
	}
	slices.SortFunc(out, func(a, b *member) int { return cmp.Compare(a.value, b.value) })
	return out
}

// identity is what a member is hashed by: its ID, or its address when it
// has none, so that a change of weight or metadata keeps it in place.
func identity(m *member) string {
	if m.inst.ID != "" {
		return m.inst.ID
	}
	return m.inst.Address
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// rendezvousScore is the weight of instance id for the client whose hash
// state is seed: FNV-1a over the client ID, a separator and the instance
// ID, then mixed so that every bit of the score depends on every input bit.
func rendezvousScore(seed uint64, id string) uint64 {
	h := (seed ^ 0xff) * fnvPrime
	return mix64(hashString(h, id))
}

func hashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return h
}
