package endpointer

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/go-kit/kit/endpoint"

	"github.com/etcdsd/etcdsd/instance"
)

// maxCompound bounds how many groups of compound selectors (two metadata
// pairs or more) a snapshot remembers; past it they are computed on each
// pick.
const maxCompound = 256

// member is one instance value with its parsed form and its endpoint.
type member struct {
	value string
	inst  instance.Instance
	entry *entry
}

// snapshot is the immutable state that picks read: every candidate group
// precomputed for the instance set of one event.
type snapshot struct {
	closed    bool
	strategy  Strategy
	rng       *rng
	members   []*member // sorted by value
	all       *group
	index     map[string]*group // by groupKey: one version, one metadata pair, or both
	versions  []string          // sorted, distinct; "" for unversioned instances
	endpoints []endpoint.Endpoint

	compound  sync.Map // groupKey → *group, for selectors with 2+ metadata pairs
	compoundN atomic.Int32
}

// newSnapshot precomputes the groups of members, which are sorted by value.
func newSnapshot(members []*member, st Strategy, r *rng) *snapshot {
	s := &snapshot{strategy: st, rng: r, members: members, index: make(map[string]*group)}
	s.all = newGroup(members, st, r)
	byKey := make(map[string][]*member)
	versions := make(map[string]bool)
	seen := make(map[*entry]bool, len(members))
	for _, m := range members {
		v := m.inst.Version
		versions[v] = true
		if v != "" {
			k := groupKey(v, nil)
			byKey[k] = append(byKey[k], m)
		}
		for key, value := range m.inst.Metadata {
			pair := [][2]string{{key, value}}
			k := groupKey("", pair)
			byKey[k] = append(byKey[k], m)
			if v != "" {
				k = groupKey(v, pair)
				byKey[k] = append(byKey[k], m)
			}
		}
		if !seen[m.entry] {
			seen[m.entry] = true
			s.endpoints = append(s.endpoints, m.entry.endpoint)
		}
	}
	for k, ms := range byKey {
		s.index[k] = newGroup(ms, st, r)
	}
	for v := range versions {
		s.versions = append(s.versions, v)
	}
	slices.Sort(s.versions)
	return s
}

// lookup returns the candidates of a non-empty selector, nil when none.
func (s *snapshot) lookup(sel *selector) *group {
	if sel.simple() {
		return s.index[sel.key]
	}
	if g, ok := s.compound.Load(sel.key); ok {
		return g.(*group)
	}
	var ms []*member
	for _, m := range s.members {
		if sel.matches(&m.inst) {
			ms = append(ms, m)
		}
	}
	g := newGroup(ms, s.strategy, s.rng)
	if s.compoundN.Add(1) <= maxCompound {
		s.compound.Store(sel.key, g)
	}
	return g
}

// instances returns the parsed instances of the snapshot.
func (s *snapshot) instances() []instance.Instance {
	out := make([]instance.Instance, len(s.members))
	for i, m := range s.members {
		out[i] = m.inst
		out[i].Metadata = maps.Clone(m.inst.Metadata)
	}
	return out
}
