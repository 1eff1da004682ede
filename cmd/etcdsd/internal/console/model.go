package console

import (
	"fmt"
	"sync"
	"time"

	"github.com/etcdsd/etcdsd/catalog"
)

// logSize is how many changes the event log keeps.
const logSize = 200

// model is what the console knows of etcd: every instance and property
// seen by its catalog.Watch, with the revision each was last changed at,
// and the log of the last changes. One goroutine applies events; streams
// and handlers read it under mu and wait on changed for the next change.
type model struct {
	// startRev is etcd's revision when the console started: the first
	// snapshot's events at or below it are the state found, not changes.
	startRev int64
	// key returns the etcd key of an instance.
	key func(service, id string) string

	mu       sync.Mutex
	services map[string]*serviceState
	rev      int64 // highest revision applied
	version  uint64
	changed  chan struct{} // closed and replaced at every change
	log      []LogEntry    // ring of the last logSize entries, oldest first
	seq      uint64        // Seq of the last entry
	// errs holds the last error of each kind's watch, until an event of
	// that kind or a successful probe shows etcd answers again.
	errs map[catalog.Kind]string
	// probeErr is why the last probe failed, until one succeeds: etcd can
	// go silent long before a watch reports it.
	probeErr string
	errSince time.Time
}

type serviceState struct {
	instances map[string]instanceState
	// props by instance id ("" for the whole service), then by name.
	props map[string]map[string]propertyState
}

type instanceState struct {
	inst catalog.Instance
	rev  int64
}

type propertyState struct {
	value string
	rev   int64
}

// LogEntry is one change in the event log.
type LogEntry struct {
	Seq      uint64 `json:"seq"`
	Revision int64  `json:"revision,omitempty"`
	Time     int64  `json:"time"` // unix milliseconds, when the console saw it
	// Action is register, re-register, update, deregister, drain,
	// undrain, pin, weight, weight cleared, property, property cleared,
	// etcd error or etcd ok.
	Action  string `json:"action"`
	Service string `json:"service,omitempty"`
	ID      string `json:"id,omitempty"`
	Detail  string `json:"detail,omitempty"`
	// Resync marks a change found by comparing a fresh snapshot (after
	// compaction or an outage): the net difference, not each step.
	Resync bool `json:"resync,omitempty"`
}

func newModel(startRev int64, key func(service, id string) string) *model {
	return &model{
		startRev: startRev,
		key:      key,
		services: make(map[string]*serviceState),
		rev:      startRev,
		changed:  make(chan struct{}),
		errs:     make(map[catalog.Kind]string),
	}
}

func (m *model) service(name string) *serviceState {
	s := m.services[name]
	if s == nil {
		s = &serviceState{instances: make(map[string]instanceState), props: make(map[string]map[string]propertyState)}
		m.services[name] = s
	}
	return s
}

// forget drops a service that has neither instances nor properties left.
func (m *model) forget(name string) {
	if s := m.services[name]; s != nil && len(s.instances) == 0 && len(s.props) == 0 {
		delete(m.services, name)
	}
}

// apply takes one event of the catalog's Watch into the model.
func (m *model) apply(ev catalog.Event, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ev.Err != nil {
		if !m.failingLocked() {
			m.errSince = now
		}
		m.errs[ev.Kind] = fmt.Sprintf("%s watch: %v", ev.Kind, ev.Err)
		m.append(now, LogEntry{Action: "etcd error", Detail: m.errs[ev.Kind] + "; retrying"})
		m.bump()
		return
	}
	_, cleared := m.errs[ev.Kind]
	if cleared {
		delete(m.errs, ev.Kind)
		m.okAgain(now)
	}
	found := ev.Resync && ev.Revision <= m.startRev // part of the state at start
	var entry *LogEntry
	switch ev.Kind {
	case catalog.KindInstance:
		entry = m.applyInstance(ev)
	case catalog.KindProperty:
		entry = m.applyProperty(ev)
	}
	if entry == nil {
		if cleared {
			m.bump()
		}
		return
	}
	m.rev = max(m.rev, ev.Revision)
	if !found {
		entry.Revision, entry.Service, entry.ID, entry.Resync = ev.Revision, ev.Service, ev.ID, ev.Resync
		m.append(now, *entry)
	}
	m.bump()
}

// applyInstance returns the log entry of an instance change, nil when it
// changes nothing (a resync's Put of what the model has).
func (m *model) applyInstance(ev catalog.Event) *LogEntry {
	if ev.Instance == nil {
		return nil
	}
	s := m.service(ev.Service)
	old, had := s.instances[ev.ID]
	if ev.Type == catalog.Delete {
		if !had {
			return nil
		}
		delete(s.instances, ev.ID)
		m.forget(ev.Service)
		return &LogEntry{Action: "deregister", Detail: describe(old.inst)}
	}
	if had && old.rev == ev.Revision {
		return nil
	}
	s.instances[ev.ID] = instanceState{inst: *ev.Instance, rev: ev.Revision}
	switch {
	case !had:
		return &LogEntry{Action: "register", Detail: describe(*ev.Instance)}
	case old.inst.Equal(*ev.Instance):
		return &LogEntry{Action: "re-register", Detail: "same value, put again (e.g. on a new lease)"}
	}
	return &LogEntry{Action: "update", Detail: describe(*ev.Instance)}
}

// applyProperty returns the log entry of a property change.
func (m *model) applyProperty(ev catalog.Event) *LogEntry {
	p := ev.Property
	if p == nil {
		return nil
	}
	s := m.service(ev.Service)
	if ev.Type == catalog.Delete {
		if _, ok := s.props[p.ID][p.Name]; !ok {
			return nil
		}
		delete(s.props[p.ID], p.Name)
		if len(s.props[p.ID]) == 0 {
			delete(s.props, p.ID)
		}
		m.forget(ev.Service)
		switch p.Name {
		case catalog.PropDisabled:
			return &LogEntry{Action: "undrain", Detail: scope(p) + "drain cleared"}
		case catalog.PropWeight:
			return &LogEntry{Action: "weight cleared", Detail: scope(p) + "back to the registered weight"}
		}
		return &LogEntry{Action: "property cleared", Detail: scope(p) + p.Name}
	}
	if old, ok := s.props[p.ID][p.Name]; ok && old.rev == ev.Revision {
		return nil
	}
	if s.props[p.ID] == nil {
		s.props[p.ID] = make(map[string]propertyState)
	}
	s.props[p.ID][p.Name] = propertyState{value: p.Value, rev: ev.Revision}
	switch {
	case p.Name == catalog.PropDisabled && p.Value == "true":
		return &LogEntry{Action: "drain", Detail: scope(p) + "out of rotation"}
	case p.Name == catalog.PropDisabled:
		return &LogEntry{Action: "pin", Detail: scope(p) + "disabled=" + p.Value + ": in rotation even if its service is drained"}
	case p.Name == catalog.PropWeight:
		return &LogEntry{Action: "weight", Detail: scope(p) + "weight " + p.Value}
	}
	return &LogEntry{Action: "property", Detail: scope(p) + p.Name + "=" + p.Value}
}

func scope(p *catalog.Property) string {
	if p.ID == "" {
		return "whole service: "
	}
	return ""
}

func describe(inst catalog.Instance) string {
	d := inst.Address
	if inst.Version != "" {
		d += " " + inst.Version
	}
	return d
}

// append adds an entry to the log; mu is held.
func (m *model) append(now time.Time, e LogEntry) {
	m.seq++
	e.Seq, e.Time = m.seq, now.UnixMilli()
	if len(m.log) == logSize {
		copy(m.log, m.log[1:])
		m.log = m.log[:logSize-1]
	}
	m.log = append(m.log, e)
}

// probed takes the result of a probe of etcd: an error starts an outage
// (logged once), success ends it, with the watches' errors too.
func (m *model) probed(err error, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if m.probeErr != "" {
			return
		}
		if !m.failingLocked() {
			m.errSince = now
		}
		m.probeErr = fmt.Sprintf("etcd did not answer a read: %v", err)
		m.append(now, LogEntry{Action: "etcd error", Detail: m.probeErr + "; retrying"})
		m.bump()
		return
	}
	if !m.failingLocked() {
		return
	}
	clear(m.errs)
	m.probeErr = ""
	m.okAgain(now)
	m.bump()
}

// okAgain logs the end of an outage once no watch or probe reports an
// error; mu is held.
func (m *model) okAgain(now time.Time) {
	if !m.failingLocked() {
		m.append(now, LogEntry{Action: "etcd ok", Detail: "etcd answers again; the watch catches up with the net difference"})
	}
}

// failing reports whether a watch or the probe reported an error that no
// event or probe has cleared since.
func (m *model) failing() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.failingLocked()
}

func (m *model) failingLocked() bool { return len(m.errs) > 0 || m.probeErr != "" }

// bump publishes a change; mu is held.
func (m *model) bump() {
	m.version++
	close(m.changed)
	m.changed = make(chan struct{})
}

// watchVersion returns the current version and a channel closed at the
// next change.
func (m *model) watchVersion() (uint64, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.version, m.changed
}

// logSince returns the entries after seq, oldest first.
func (m *model) logSince(seq uint64) []LogEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := len(m.log)
	for i > 0 && m.log[i-1].Seq > seq {
		i--
	}
	return append([]LogEntry(nil), m.log[i:]...)
}
