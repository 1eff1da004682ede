package console

import (
	"cmp"
	"maps"
	"slices"

	"github.com/etcdsd/etcdsd/catalog"
)

// Overview is what the services page shows: every service etcd holds
// instances or properties of.
type Overview struct {
	// Revision is the highest etcd revision the console has applied.
	Revision int64            `json:"revision"`
	Etcd     EtcdState        `json:"etcd"`
	Services []ServiceSummary `json:"services"`
}

// EtcdState says whether the console's watch reaches etcd.
type EtcdState struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	Since int64  `json:"since,omitempty"` // unix milliseconds
}

// ServiceSummary is one row of the overview. Ejections are not in it:
// they are decided in each client's endpointer and never reach etcd.
type ServiceSummary struct {
	Name       string         `json:"name"`
	Instances  int            `json:"instances"`
	InRotation int            `json:"inRotation"`
	Drained    int            `json:"drained"`
	Versions   []VersionCount `json:"versions"`
	// ServiceDrained: a drain of the whole service is set.
	ServiceDrained bool `json:"serviceDrained"`
	// Revision is the last revision at which an instance or property of
	// the service changed.
	Revision int64 `json:"revision"`
}

// VersionCount is how many instances run a version ("" for none given).
type VersionCount struct {
	Version string `json:"version"`
	Count   int    `json:"count"`
}

// ServiceView is what a service's page shows.
type ServiceView struct {
	Name     string         `json:"name"`
	Exists   bool           `json:"exists"`
	Revision int64          `json:"revision"`
	Etcd     EtcdState      `json:"etcd"`
	Summary  ServiceSummary `json:"summary"`
	// Properties are those set for the whole service.
	Properties []PropertyView  `json:"properties"`
	Instances  []InstanceView  `json:"instances"`
	Orphans    []OrphanedProps `json:"orphans,omitempty"`
}

// PropertyView is one property with the revision it was set at.
type PropertyView struct {
	Name     string `json:"name"`
	Value    string `json:"value"`
	Revision int64  `json:"revision"`
}

// OrphanedProps are the properties of an instance id that is not
// registered now (set ahead of it, or left after it).
type OrphanedProps struct {
	ID         string         `json:"id"`
	Properties []PropertyView `json:"properties"`
}

// InstanceView is one instance as registered and as the operator's
// properties make it.
type InstanceView struct {
	ID       string            `json:"id"`
	Key      string            `json:"key"`
	Address  string            `json:"address"`
	Version  string            `json:"version,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// RegisteredWeight is the weight in the value (0: unset, counts as 1);
	// Weight the effective one; WeightOverride "instance" or "service"
	// when a weight property sets it, at WeightRevision.
	RegisteredWeight int    `json:"registeredWeight"`
	Weight           int    `json:"weight"`
	WeightOverride   string `json:"weightOverride,omitempty"`
	WeightRevision   int64  `json:"weightRevision,omitempty"`
	// Drained: out of rotation, by a drain of the "instance" or of the
	// "service" (DrainedBy) set at DrainRevision. Pinned: the instance's
	// own disabled=false keeps it in rotation under a drained service.
	Drained       bool   `json:"drained"`
	DrainedBy     string `json:"drainedBy,omitempty"`
	DrainRevision int64  `json:"drainRevision,omitempty"`
	Pinned        bool   `json:"pinned,omitempty"`
	// Revision is the revision of the instance's key; Changed the last
	// revision at which it or a property applying to it changed.
	Revision   int64          `json:"revision"`
	Changed    int64          `json:"changed"`
	Properties []PropertyView `json:"properties,omitempty"` // its own, other than disabled and weight
}

// etcdState reads the watch's health; mu is held.
func (m *model) etcdState() EtcdState {
	if !m.failingLocked() {
		return EtcdState{OK: true}
	}
	first := m.probeErr
	for _, k := range []catalog.Kind{catalog.KindInstance, catalog.KindProperty} {
		if e, ok := m.errs[k]; ok && first == "" {
			first = e
		}
	}
	return EtcdState{Error: first, Since: m.errSince.UnixMilli()}
}

// overview renders the services page.
func (m *model) overview() Overview {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := Overview{Revision: m.rev, Etcd: m.etcdState(), Services: make([]ServiceSummary, 0, len(m.services))}
	for _, name := range slices.Sorted(maps.Keys(m.services)) {
		o.Services = append(o.Services, m.services[name].render(name, m.key).Summary)
	}
	return o
}

// serviceView renders the page of one service.
func (m *model) serviceView(name string) ServiceView {
	m.mu.Lock()
	defer m.mu.Unlock()
	var v ServiceView
	if s := m.services[name]; s != nil {
		v = s.render(name, m.key)
	} else {
		v = ServiceView{Name: name, Summary: ServiceSummary{Name: name, Versions: []VersionCount{}}, Properties: []PropertyView{}, Instances: []InstanceView{}}
	}
	v.Revision, v.Etcd = m.rev, m.etcdState()
	return v
}

// exists reports whether etcd holds instances or properties of name.
func (m *model) exists(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.services[name] != nil
}

// instanceRevs returns the revision of each instance's key, by id.
func (m *model) instanceRevs(name string) map[string]int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int64)
	if s := m.services[name]; s != nil {
		for id, st := range s.instances {
			out[id] = st.rev
		}
	}
	return out
}

// render computes what the operator's properties make of each instance,
// with catalog.Effective, as every Instancer does.
func (s *serviceState) render(name string, key func(service, id string) string) ServiceView {
	v := ServiceView{Name: name, Exists: true, Properties: propertyViews(s.props[""]), Instances: make([]InstanceView, 0, len(s.instances))}
	var props []catalog.Property
	for id, byName := range s.props {
		for n, p := range byName {
			props = append(props, catalog.Property{Service: name, ID: id, Name: n, Value: p.value})
		}
	}
	svc := s.props[""]
	sum := ServiceSummary{Name: name, Instances: len(s.instances), ServiceDrained: svc[catalog.PropDisabled].value == "true"}
	versions := make(map[string]int)
	for _, p := range svc {
		sum.Revision = max(sum.Revision, p.rev)
	}
	for _, id := range slices.Sorted(maps.Keys(s.instances)) {
		st := s.instances[id]
		eff, inRotation := catalog.Effective(st.inst, props)
		own := s.props[id]
		iv := InstanceView{
			ID: id, Key: key(name, id), Address: st.inst.Address, Version: st.inst.Version, Metadata: st.inst.Metadata,
			RegisteredWeight: st.inst.Weight, Weight: eff.EffectiveWeight(),
			Drained: !inRotation, Revision: st.rev, Changed: st.rev,
		}
		if w, ok := own[catalog.PropWeight]; ok {
			iv.WeightOverride, iv.WeightRevision = "instance", w.rev
		} else if w, ok := svc[catalog.PropWeight]; ok {
			iv.WeightOverride, iv.WeightRevision = "service", w.rev
		}
		d, hasOwn := own[catalog.PropDisabled]
		switch {
		case iv.Drained && hasOwn && d.value == "true":
			iv.DrainedBy, iv.DrainRevision = "instance", d.rev
		case iv.Drained:
			iv.DrainedBy, iv.DrainRevision = "service", svc[catalog.PropDisabled].rev
		case hasOwn && d.value == "false" && sum.ServiceDrained:
			iv.Pinned, iv.DrainRevision = true, d.rev
		}
		for n, p := range own {
			iv.Changed = max(iv.Changed, p.rev)
			if n != catalog.PropDisabled && n != catalog.PropWeight {
				iv.Properties = append(iv.Properties, PropertyView{Name: n, Value: p.value, Revision: p.rev})
			}
		}
		for _, p := range svc {
			iv.Changed = max(iv.Changed, p.rev)
		}
		slices.SortFunc(iv.Properties, func(a, b PropertyView) int { return cmp.Compare(a.Name, b.Name) })
		if iv.Drained {
			sum.Drained++
		}
		versions[iv.Version]++
		sum.Revision = max(sum.Revision, iv.Changed)
		v.Instances = append(v.Instances, iv)
	}
	for _, id := range slices.Sorted(maps.Keys(s.props)) {
		if _, registered := s.instances[id]; id != "" && !registered {
			v.Orphans = append(v.Orphans, OrphanedProps{ID: id, Properties: propertyViews(s.props[id])})
			for _, p := range s.props[id] {
				sum.Revision = max(sum.Revision, p.rev)
			}
		}
	}
	sum.InRotation = sum.Instances - sum.Drained
	sum.Versions = make([]VersionCount, 0, len(versions))
	for _, ver := range slices.Sorted(maps.Keys(versions)) {
		sum.Versions = append(sum.Versions, VersionCount{Version: ver, Count: versions[ver]})
	}
	v.Summary = sum
	return v
}

func propertyViews(byName map[string]propertyState) []PropertyView {
	out := make([]PropertyView, 0, len(byName))
	for _, n := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, PropertyView{Name: n, Value: byName[n].value, Revision: byName[n].rev})
	}
	return out
}
