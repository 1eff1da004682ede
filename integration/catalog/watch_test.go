package catalog_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// want describes one expected event.
type want struct {
	typ     catalog.EventType
	kind    catalog.Kind
	id      string
	rev     int64 // 0: any
	address string
	prop    string
}

func (w want) matches(ev catalog.Event) bool {
	if ev.Type != w.typ || ev.Kind != w.kind || ev.ID != w.id || (w.rev != 0 && ev.Revision != w.rev) {
		return false
	}
	switch w.kind {
	case catalog.KindInstance:
		return ev.Instance != nil && ev.Instance.Address == w.address
	default:
		return ev.Property != nil && ev.Property.Name+"="+ev.Property.Value == w.prop
	}
}

func describe(ev catalog.Event) string {
	s := fmt.Sprintf("%d %v %v %s/%s", ev.Revision, ev.Type, ev.Kind, ev.Service, ev.ID)
	if ev.Instance != nil {
		s += " " + ev.Instance.Address
	}
	if ev.Property != nil {
		s += " " + ev.Property.Name + "=" + ev.Property.Value
	}
	return s
}

func TestWatchSendsTypedEventsInOrderWithRevisions(t *testing.T) {
	srv := etcdtest.NewServer(t)
	raw := srv.Client(t)
	c := itestclient.New(t, srv.Endpoints())
	cat := newCatalog(t, c)
	const svc = "typed"

	rev0 := put(t, raw, cat.InstanceKey(svc, "old"), `{"address":"10.0.0.9:80"}`)
	put(t, raw, cat.InstanceKey("other", "x"), "10.9.9.9:80") // another service: not watched

	ctx, cancel := context.WithCancel(context.Background())
	events, err := cat.Watch(ctx, catalog.WatchService(svc))
	if err != nil {
		t.Fatal(err)
	}
	first := next(t, events, 5*time.Second)
	if !(want{typ: catalog.Put, kind: catalog.KindInstance, id: "old", rev: rev0, address: "10.0.0.9:80"}).matches(first) || !first.Resync {
		t.Fatalf("first event = %s (resync %v), want the existing instance as a resync put", describe(first), first.Resync)
	}

	reg := register(t, cat, catalog.Instance{Name: svc, ID: "a", Address: "10.0.0.1:80", Version: "v1"})
	if err := cat.SetProperty(ctx, svc, "a", catalog.PropWeight, "5"); err != nil {
		t.Fatal(err)
	}
	revs := []int64{
		put(t, raw, cat.InstanceKey(svc, "a"), `{"address":"10.0.0.1:81","version":"v2"}`),
		put(t, raw, "/etcdsd/properties/services/"+svc+"/_/disabled", "true"),
		del(t, raw, "/etcdsd/properties/services/"+svc+"/_/disabled"),
		del(t, raw, cat.InstanceKey(svc, "old")),
	}
	wants := []want{
		{typ: catalog.Put, kind: catalog.KindInstance, id: "a", address: "10.0.0.1:80"},
		{typ: catalog.Put, kind: catalog.KindProperty, id: "a", prop: "weight=5"},
		{typ: catalog.Put, kind: catalog.KindInstance, id: "a", rev: revs[0], address: "10.0.0.1:81"},
		{typ: catalog.Put, kind: catalog.KindProperty, id: "", rev: revs[1], prop: "disabled=true"},
		{typ: catalog.Delete, kind: catalog.KindProperty, id: "", rev: revs[2], prop: "disabled=true"},
		{typ: catalog.Delete, kind: catalog.KindInstance, id: "old", rev: revs[3], address: "10.0.0.9:80"},
	}
	// Per kind, events come in revision order; across kinds, as they arrive.
	got := map[catalog.Kind][]catalog.Event{}
	for range wants {
		ev := next(t, events, 5*time.Second)
		if ev.Service != svc || ev.Resync {
			t.Fatalf("unexpected event %s (resync %v)", describe(ev), ev.Resync)
		}
		got[ev.Kind] = append(got[ev.Kind], ev)
	}
	for _, kind := range []catalog.Kind{catalog.KindInstance, catalog.KindProperty} {
		var kw []want
		for _, w := range wants {
			if w.kind == kind {
				kw = append(kw, w)
			}
		}
		if len(got[kind]) != len(kw) {
			t.Fatalf("%v events: got %d, want %d", kind, len(got[kind]), len(kw))
		}
		for i, w := range kw {
			ev := got[kind][i]
			if !w.matches(ev) {
				t.Errorf("%v event %d = %s, want %+v", kind, i, describe(ev), w)
			}
			if i > 0 && ev.Revision <= got[kind][i-1].Revision {
				t.Errorf("%v revisions not increasing: %d after %d", kind, ev.Revision, got[kind][i-1].Revision)
			}
		}
	}
	if ev := got[catalog.KindInstance][0]; ev.Instance.Version != "v1" || ev.Instance.Name != svc || reg.Key() != cat.InstanceKey(svc, "a") {
		t.Errorf("put event instance = %+v", ev.Instance)
	}

	cancel()
	select {
	case ev, ok := <-events:
		if ok {
			t.Fatalf("event after cancel: %s", describe(ev))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("events not closed within 5s of cancel")
	}
}

func TestWatchResumesAfterEtcdRestartWithoutGapOrDuplicate(t *testing.T) {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("needs an embedded etcd to restart")
	}
	raw := srv.Client(t)
	c := itestclient.New(t, srv.Endpoints())
	cat := newCatalog(t, c)
	const svc = "restart"
	key := func(id string) string { return cat.InstanceKey(svc, id) }

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := cat.Watch(ctx, catalog.WatchService(svc))
	if err != nil {
		t.Fatal(err)
	}
	put(t, raw, key("1"), "10.0.0.1:80")
	put(t, raw, key("2"), "10.0.0.2:80")
	seen := map[string]int{}
	record := func(ev catalog.Event) {
		seen[fmt.Sprintf("%v %s %s", ev.Type, ev.ID, ev.Instance.Address)]++
	}
	record(next(t, events, 5*time.Second))
	record(next(t, events, 5*time.Second))

	srv.Restart()
	put(t, raw, key("3"), "10.0.0.3:80")
	put(t, raw, key("1"), "10.0.0.11:80")
	del(t, raw, key("2"))
	sentinel := put(t, raw, key("zz"), "10.0.0.99:80")

	var last int64
	for {
		ev := next(t, events, 15*time.Second)
		if ev.Revision < last {
			t.Fatalf("revision went back from %d to %d at %s", last, ev.Revision, describe(ev))
		}
		last = ev.Revision
		if ev.ID == "zz" {
			if ev.Revision != sentinel {
				t.Fatalf("sentinel at revision %d, want %d", ev.Revision, sentinel)
			}
			break
		}
		record(ev)
	}
	wantSeen := map[string]int{
		"put 1 10.0.0.1:80":    1,
		"put 2 10.0.0.2:80":    1,
		"put 3 10.0.0.3:80":    1,
		"put 1 10.0.0.11:80":   1,
		"delete 2 10.0.0.2:80": 1,
	}
	if fmt.Sprint(seen) != fmt.Sprint(wantSeen) {
		t.Fatalf("events seen %v, want each of %v once", seen, wantSeen)
	}
}

func TestWatchRejectsBadServiceName(t *testing.T) {
	srv := etcdtest.NewServer(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	_, err := cat.Watch(context.Background(), catalog.WatchService("a/b"))
	if err == nil || !strings.Contains(err.Error(), `"a/b"`) {
		t.Fatalf("err = %v, want one naming \"a/b\"", err)
	}
}

// A Watch of a large fleet with properties returns as soon as it has read
// both, then delivers the whole content: its queue of events for the
// reader never holds back the reads of its own start.
func TestWatchOfTenThousandInstancesWithPropertiesStartsPromptly(t *testing.T) {
	srv := etcdtest.NewServer(t)
	raw := srv.Client(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	const services, perService = 10, 1000
	putFleet(t, raw, cat, services, perService)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	props := map[string]string{"svc-0/": "disabled=true", "svc-1/i1": "weight=5", "svc-0/i2": "disabled=false"}
	for _, p := range []struct{ service, id, name, value string }{
		{"svc-0", "", catalog.PropDisabled, "true"},
		{"svc-1", "i1", catalog.PropWeight, "5"},
		{"svc-0", "i2", catalog.PropDisabled, "false"},
	} {
		if err := cat.SetProperty(ctx, p.service, p.id, p.name, p.value); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	events, err := cat.Watch(ctx)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Watch after %v: %v", took, err)
	}
	if ctx.Err() != nil || took > 10*time.Second {
		t.Fatalf("Watch returned after %v (its context: %v); want it prompt", took, ctx.Err())
	}
	instances := map[string]bool{}
	gotProps := map[string]string{}
	for len(instances) < services*perService || len(gotProps) < len(props) {
		ev := next(t, events, 10*time.Second)
		if ev.Type != catalog.Put || !ev.Resync {
			t.Fatalf("event %s (resync %v) before the whole content; want only resync puts", describe(ev), ev.Resync)
		}
		key := ev.Service + "/" + ev.ID
		switch ev.Kind {
		case catalog.KindInstance:
			if instances[key] {
				t.Fatalf("instance %s twice", key)
			}
			instances[key] = true
		case catalog.KindProperty:
			gotProps[key] = ev.Property.Name + "=" + ev.Property.Value
		}
	}
	t.Logf("Watch of %d instances and %d properties: returned in %v, content delivered in %v", len(instances), len(gotProps), took, time.Since(start))
	if fmt.Sprint(gotProps) != fmt.Sprint(props) {
		t.Fatalf("properties %v, want %v", gotProps, props)
	}
}

// A Watch whose context has ended fails, naming why, rather than return a
// channel that closes with nothing on it.
func TestWatchFailsWhenItsContextHasEnded(t *testing.T) {
	srv := etcdtest.NewServer(t)
	raw := srv.Client(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	putFleet(t, raw, cat, 2, 1000) // more than a Watch queues for its reader
	if err := cat.SetProperty(context.Background(), "svc-0", "", catalog.PropDisabled, "true"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	events, err := cat.Watch(ctx)
	if !errors.Is(err, context.Canceled) || events != nil {
		t.Fatalf("Watch of a cancelled context: %v, %v; want no channel and an error wrapping context.Canceled", events, err)
	}

	// A deadline that ends while Watch starts: it either starts in time or
	// fails with the deadline, never returns late with a nil error.
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	events, err = cat.Watch(ctx)
	switch {
	case err != nil && !errors.Is(err, context.DeadlineExceeded):
		t.Fatalf("Watch: %v", err)
	case err == nil && ctx.Err() != nil:
		t.Fatalf("Watch returned a nil error after its context ended (%v)", ctx.Err())
	case err == nil:
		for range events { // closed once the deadline passes
		}
	}
}

func TestWatchReaderThatStopsReadingHoldsBackNoInstancerOfItsPrefix(t *testing.T) {
	srv := etcdtest.NewServer(t)
	raw := srv.Client(t)
	c := itestclient.New(t, srv.Endpoints())
	cat := newCatalog(t, c)
	const svc = "stuck"
	prefix := cat.Root() + svc + "/"

	ctx, cancel := context.WithCancel(context.Background())
	events, err := cat.Watch(ctx, catalog.WatchService(svc)) // not read for now
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	in, err := etcdv3.NewInstancer(c, prefix, itest.Logger(t))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	defer in.Stop()
	defer cancel() // first: it frees a Watch still stuck

	// Over a thousand events the reader does not take: its Watch holds
	// back what it is handed, in transactions of at most etcd's 128 ops.
	const behind, perTxn = 1152, 128
	for i := 0; i < behind; i += perTxn {
		ops := make([]clientv3.Op, 0, perTxn)
		for j := i; j < i+perTxn; j++ {
			ops = append(ops, clientv3.OpPut(cat.InstanceKey(svc, fmt.Sprintf("i%04d", j)), fmt.Sprintf("10.0.%d.%d:80", j/250, j%250+1)))
		}
		tctx, tcancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := raw.Txn(tctx).Then(ops...).Commit()
		tcancel()
		if err != nil {
			t.Fatalf("txn at %d: %v", i, err)
		}
	}
	// Every later write reaches the Instancer of the same client and
	// prefix promptly.
	for i := range 5 {
		rev := put(t, raw, cat.InstanceKey(svc, fmt.Sprintf("late%d", i)), fmt.Sprintf("10.1.0.%d:80", i+1))
		itest.Eventually(t, 5*time.Second, fmt.Sprintf("the Instancer at revision %d while the Watch reader is stuck", rev), func() bool {
			return in.Revision() >= rev
		})
	}
	if n := len(in.State().Instances); n != behind+5 {
		t.Fatalf("the Instancer holds %d instances, want %d", n, behind+5)
	}
	// The reader that was stuck gets every event, in order, once it reads.
	var last int64
	for got := 0; got < behind+5; {
		ev := next(t, events, 5*time.Second)
		if ev.Kind != catalog.KindInstance {
			continue
		}
		if ev.Type != catalog.Put || ev.Revision < last {
			t.Fatalf("event %d = %s after revision %d", got, describe(ev), last)
		}
		last = ev.Revision
		got++
	}
	cancel()
	for range events {
	}
}
