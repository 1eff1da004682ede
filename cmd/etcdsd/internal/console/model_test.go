package console

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/catalog"
)

func instanceEvent(typ catalog.EventType, id string, rev int64, resync bool) catalog.Event {
	inst := catalog.Instance{Name: "api", ID: id, Address: "10.0.0.1:80", Version: "v1"}
	return catalog.Event{Type: typ, Kind: catalog.KindInstance, Service: "api", ID: id, Instance: &inst, Revision: rev, Resync: resync}
}

func propertyEvent(typ catalog.EventType, id, name, value string, rev int64) catalog.Event {
	p := catalog.Property{Service: "api", ID: id, Name: name, Value: value}
	return catalog.Event{Type: typ, Kind: catalog.KindProperty, Service: "api", ID: id, Property: &p, Revision: rev}
}

func actions(m *model) []string {
	var out []string
	for _, e := range m.logSince(0) {
		out = append(out, e.Action)
	}
	return out
}

func TestModelLogsChangesButNotTheStateFoundAtStart(t *testing.T) {
	m := newModel(10, func(s, id string) string { return "/services/" + s + "/" + id })
	now := time.Now()
	for _, ev := range []catalog.Event{
		instanceEvent(catalog.Put, "a", 4, true),  // found at start
		instanceEvent(catalog.Put, "b", 12, true), // registered after start, before the watch's snapshot
		instanceEvent(catalog.Put, "b", 12, true), // a resync's Put of what the model has
		instanceEvent(catalog.Put, "c", 13, false),
		instanceEvent(catalog.Put, "c", 14, false), // same value, put again
		propertyEvent(catalog.Put, "a", catalog.PropDisabled, "true", 15),
		propertyEvent(catalog.Put, "a", catalog.PropWeight, "4", 16),
		propertyEvent(catalog.Delete, "a", catalog.PropWeight, "4", 17),
		propertyEvent(catalog.Delete, "a", catalog.PropDisabled, "true", 18),
		propertyEvent(catalog.Put, "", catalog.PropDisabled, "true", 19),
		propertyEvent(catalog.Put, "c", catalog.PropDisabled, "false", 20),
		instanceEvent(catalog.Delete, "b", 21, false),
	} {
		m.apply(ev, now)
	}
	want := []string{"register", "register", "re-register", "drain", "weight", "weight cleared", "undrain", "drain", "pin", "deregister"}
	if got := actions(m); !slices.Equal(got, want) {
		t.Fatalf("log = %q, want %q", got, want)
	}
	o := m.overview()
	if o.Revision != 21 || len(o.Services) != 1 {
		t.Fatalf("overview = %+v", o)
	}
	s := o.Services[0]
	if s.Instances != 2 || s.Drained != 1 || s.InRotation != 1 || !s.ServiceDrained || s.Revision != 20 {
		t.Fatalf("api = %+v, want a drained by the service, c pinned", s)
	}
}

func TestModelReportsAnOutageUntilEtcdAnswers(t *testing.T) {
	m := newModel(1, func(s, id string) string { return s + "/" + id })
	now := time.Now()
	version, changed := m.watchVersion()
	m.apply(catalog.Event{Kind: catalog.KindInstance, Err: errors.New("etcd unreachable")}, now)
	select {
	case <-changed:
	default:
		t.Fatal("an error did not wake the streams")
	}
	if v, _ := m.watchVersion(); v == version || !m.failing() || m.overview().Etcd.OK {
		t.Fatalf("after a watch error: failing %v, etcd %+v", m.failing(), m.overview().Etcd)
	}
	if e := m.overview().Etcd; e.Error != "instance watch: etcd unreachable" || e.Since != now.UnixMilli() {
		t.Fatalf("etcd state %+v", e)
	}
	m.probed(nil, now)
	if m.failing() || !m.overview().Etcd.OK {
		t.Fatal("still failing after a successful probe")
	}
	if got, want := actions(m), []string{"etcd error", "etcd ok"}; !slices.Equal(got, want) {
		t.Fatalf("log = %q, want %q", got, want)
	}
}

func TestModelKeepsTheLastChangesOnly(t *testing.T) {
	m := newModel(0, func(s, id string) string { return s + "/" + id })
	for i := range logSize + 50 {
		m.apply(instanceEvent(catalog.Put, "a", int64(i+1), false), time.Now())
	}
	l := m.logSince(0)
	if len(l) != logSize || l[0].Seq != 51 || l[len(l)-1].Seq != logSize+50 {
		t.Fatalf("log holds %d entries, seq %d to %d", len(l), l[0].Seq, l[len(l)-1].Seq)
	}
	if n := len(m.logSince(logSize + 40)); n != 10 {
		t.Fatalf("logSince returned %d entries, want 10", n)
	}
}
