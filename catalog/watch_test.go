package catalog

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// The batches a Mirror hands its Feed across an outage (the first
// snapshot, Fail, the fresh snapshot) and a compaction (a snapshot with no
// Fail before it) become these events: Recovered once per Err, first,
// carrying the fresh snapshot's revision, then the net difference. (The
// observer runs on the caller: pump takes each batch at once.)
func TestWatchSignalsRecoveryOnceAfterEachOutage(t *testing.T) {
	testRecoveries(t, true)
}

// Without WatchRecoveries, a reader written before it sees no new kind of
// event: the same batches give no Recovered event.
func TestWatchSendsNoRecoveredEventUnlessAsked(t *testing.T) {
	testRecoveries(t, false)
}

func testRecoveries(t *testing.T, recoveries bool) {
	l, err := newLayout(DefaultRoot, DefaultPropertiesRoot)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{ctx: ctx, layout: l, logger: log.NewNopLogger(), recoveries: recoveries, updates: make(chan []Event), out: make(chan Event), pumped: make(chan struct{})}
	go w.pump()
	defer func() { cancel(); <-w.pumped }()
	feed := pipeline.NewFeed(pipeline.WithParser(l.decodeInstance), pipeline.WithObserver(w.handler(KindInstance)))
	key := l.instanceKey("app", "a")

	type want struct {
		rev       int64
		err       bool
		recovered bool
		address   string
	}
	expect := func(what string, wants ...want) {
		t.Helper()
		for _, wt := range wants {
			if wt.recovered && !recoveries {
				continue
			}
			select {
			case ev := <-w.out:
				got := want{rev: ev.Revision, err: ev.Err != nil, recovered: ev.Recovered}
				if ev.Instance != nil {
					got.address = ev.Instance.Address
				}
				if got != wt || ev.Kind != KindInstance {
					t.Fatalf("%s: event %+v, want %+v", what, ev, wt)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: no event, want %+v", what, wt)
			}
		}
		select {
		case ev := <-w.out:
			t.Fatalf("%s: unexpected event %+v", what, ev)
		default:
		}
	}

	feed.Reset(2, []pipeline.KV{{Key: key, Value: "10.0.0.1:80", ModRev: 2}}, true)
	expect("first snapshot", want{rev: 2, address: "10.0.0.1:80"})
	feed.Fail(errors.New("etcd unreachable"))
	expect("outage", want{rev: 2, err: true})
	feed.Reset(5, []pipeline.KV{{Key: key, Value: "10.0.0.2:80", ModRev: 4}}, false)
	expect("recovery", want{rev: 5, recovered: true}, want{rev: 4, address: "10.0.0.2:80"})
	feed.Fail(errors.New("etcd unreachable"))
	expect("second outage", want{rev: 5, err: true})
	feed.Reset(5, []pipeline.KV{{Key: key, Value: "10.0.0.2:80", ModRev: 4}}, false)
	expect("recovery with nothing changed", want{rev: 5, recovered: true})
	feed.Reset(7, []pipeline.KV{{Key: key, Value: "10.0.0.3:80", ModRev: 6}}, false)
	expect("compaction: a resync without an outage", want{rev: 6, address: "10.0.0.3:80"})
}

// Until Watch has read both kinds, pump takes every batch, however long
// its queue: the snapshots come on Watch's own goroutine, before anyone
// reads. Once started, a queue of maxQueued events holds the mirrors back.
func TestWatchQueuesItsWholeStartThenHoldsBack(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{ctx: ctx, logger: log.NewNopLogger(), updates: make(chan []Event), out: make(chan Event), started: make(chan struct{}), pumped: make(chan struct{})}
	go w.pump()
	defer func() { cancel(); <-w.pumped }()
	batch := func(kind Kind, n int) []Event {
		b := make([]Event, n)
		for i := range b {
			b[i] = Event{Type: Put, Kind: kind, Revision: int64(i + 1), Resync: true}
		}
		return b
	}
	offer := func(b []Event) bool {
		select {
		case w.updates <- b:
			return true
		case <-time.After(time.Second):
			return false
		}
	}
	if !offer(batch(KindInstance, 2*maxQueued)) || !offer(batch(KindProperty, 1)) {
		t.Fatal("pump held back a snapshot before the Watch started")
	}
	close(w.started)
	if offer(batch(KindInstance, 1)) {
		t.Fatalf("pump took a batch with %d events queued after the start", 2*maxQueued+1)
	}
	for i := range 2 * maxQueued {
		if ev := <-w.out; ev.Kind != KindInstance || ev.Revision != int64(i+1) {
			t.Fatalf("event %d: %+v", i, ev)
		}
	}
	if ev := <-w.out; ev.Kind != KindProperty {
		t.Fatalf("last event of the start: %+v, want the property", ev)
	}
	if !offer(batch(KindInstance, 1)) {
		t.Fatal("pump held back with an empty queue")
	}
}

// EventType is catalog's own, and says itself as the CLI's watch prints it.
func TestEventTypeOfEveryChange(t *testing.T) {
	for _, tc := range []struct {
		op   pipeline.Op
		want EventType
		name string
	}{{pipeline.Put, Put, "put"}, {pipeline.Delete, Delete, "delete"}} {
		if got := eventType(tc.op); got != tc.want || got.String() != tc.name {
			t.Errorf("eventType(%v) = %v (%q), want %v (%q)", tc.op, got, got.String(), tc.want, tc.name)
		}
	}
	if s := EventType(0).String(); s != "EventType(0)" {
		t.Errorf("EventType(0).String() = %q", s)
	}
}
