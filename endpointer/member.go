package endpointer

import (
	"maps"
	"sync/atomic"

	"github.com/etcdsd/etcdsd/instance"
)

// member is one distinct instance value. Picks read only entry; the rest
// belongs to the writer.
type member struct {
	value string
	// inst is the parsed value; nil for a plain address (the value itself),
	// so that the common case stores no second copy.
	inst  *instance.Instance
	entry atomic.Pointer[entry] // set while routed
	// allPos is the member's position in the group of all instances.
	allPos uint64
	// refs counts the keys holding the value.
	refs int32
	// routed: in the groups, with an endpoint. inSubset: ranked within
	// its version's subset (WithSubset). touched: in writer.touched.
	// (Fields are ordered so that a member fits 48 bytes.)
	routed, inSubset, touched bool
}

func (m *member) address() string {
	if m.inst == nil {
		return m.value
	}
	return m.inst.Address
}

func (m *member) version() string {
	if m.inst == nil {
		return ""
	}
	return m.inst.Version
}

func (m *member) weight() uint64 {
	if m.inst == nil {
		return 1
	}
	return uint64(m.inst.EffectiveWeight())
}

// identity is what a member is hashed by for subsetting: its ID, or its
// address when it has none, so that a change of weight or metadata keeps
// it in place.
func (m *member) identity() string {
	if m.inst != nil && m.inst.ID != "" {
		return m.inst.ID
	}
	return m.address()
}

// instance returns a copy of the parsed value that the caller may change.
func (m *member) instance() instance.Instance {
	if m.inst == nil {
		return instance.Instance{Address: m.value}
	}
	in := *m.inst
	in.Metadata = maps.Clone(in.Metadata)
	return in
}
