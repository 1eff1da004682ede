package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-kit/log"
)

// updates collects what a Mirror hands to its handler.
type updates chan Update

func (u updates) next(t *testing.T) Update {
	t.Helper()
	select {
	case up := <-u:
		return up
	case <-time.After(5 * time.Second):
		t.Fatal("no update within 5s")
		return Update{}
	}
}

func startMirror(t *testing.T, c Client) (*Mirror, updates) {
	t.Helper()
	ups := make(updates, 64)
	m, err := NewMirror(context.Background(), c, "/p/", log.NewNopLogger(), func(u Update) { ups <- u }, WithRetryBackoff(time.Millisecond, 5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m, ups
}

func describe(changes []Change) string {
	s := ""
	for _, c := range changes {
		s += fmt.Sprintf("%v %s=%s(was %s)@%d; ", c.Type, c.Key, c.Value, c.PrevValue, c.Revision)
	}
	return s
}

func TestMirrorAppliesWatchEventsByKeyFromSnapshotRevision(t *testing.T) {
	f := newRevisionFake(Snapshot{Revision: 10, KVs: []KeyValue{{Key: "/p/a", Value: "1", ModRevision: 5}}})
	m, ups := startMirror(t, f)
	if up := ups.next(t); up.Revision != 10 || describe(up.Changes) != "create /p/a=1(was )@5; " {
		t.Fatalf("initial update = %+v", up)
	}
	w := <-f.watches
	if rev := <-f.fromRevs; rev != 11 {
		t.Fatalf("watch starts at %d, want snapshot revision + 1 = 11", rev)
	}
	w <- WatchResponse{Revision: 12, Events: []WatchEvent{
		{Type: EventPut, Key: "/p/a", Value: "2", ModRevision: 11},
		{Type: EventPut, Key: "/p/b", Value: "3", ModRevision: 12},
	}}
	if got := describe(ups.next(t).Changes); got != "modify /p/a=2(was 1)@11; create /p/b=3(was )@12; " {
		t.Fatalf("changes = %s", got)
	}
	// An event already reflected (at or below the mirror's revision) is not applied twice.
	w <- WatchResponse{Revision: 13, Events: []WatchEvent{
		{Type: EventPut, Key: "/p/b", Value: "3", ModRevision: 12},
		{Type: EventDelete, Key: "/p/a", ModRevision: 13},
	}}
	if got := describe(ups.next(t).Changes); got != "delete /p/a=(was 2)@13; " {
		t.Fatalf("changes = %s", got)
	}
	if m.Revision() != 13 {
		t.Fatalf("revision = %d, want 13", m.Revision())
	}
}

func TestMirrorResyncsAfterCompactionWithTheDifference(t *testing.T) {
	f := newRevisionFake(Snapshot{Revision: 10, KVs: []KeyValue{{Key: "/p/a", Value: "1"}, {Key: "/p/b", Value: "2"}}})
	_, ups := startMirror(t, f)
	ups.next(t)
	w := <-f.watches
	<-f.fromRevs
	f.setSnapshot(Snapshot{Revision: 30, KVs: []KeyValue{{Key: "/p/b", Value: "2"}, {Key: "/p/c", Value: "3", ModRevision: 25}}}, nil)
	w <- WatchResponse{Err: fmt.Errorf("watch: %w", ErrCompacted), CompactRevision: 20}
	up := ups.next(t)
	if up.Err != nil {
		t.Fatalf("compaction reported as an outage: %v", up.Err)
	}
	if !up.Resync || up.Revision != 30 || describe(up.Changes) != "create /p/c=3(was )@25; delete /p/a=(was 1)@30; " {
		t.Fatalf("resync update = %+v (%s)", up, describe(up.Changes))
	}
	<-f.watches
	if rev := <-f.fromRevs; rev != 31 {
		t.Fatalf("watch resumes at %d, want 31", rev)
	}
}

func TestMirrorReportsAnOutageOnceAndRecoversWithTheTrueState(t *testing.T) {
	f := newRevisionFake(Snapshot{Revision: 10, KVs: []KeyValue{{Key: "/p/a", Value: "1"}}})
	_, ups := startMirror(t, f)
	ups.next(t)
	w := <-f.watches
	<-f.fromRevs
	f.setSnapshot(Snapshot{}, errors.New("connection refused"))
	w <- WatchResponse{Err: ErrUnreachable}
	if up := ups.next(t); !errors.Is(up.Err, ErrUnreachable) {
		t.Fatalf("outage update = %+v", up)
	}
	// Several failed snapshots later, still only one error update.
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu2.Lock()
		calls := f.snapCalls
		f.mu2.Unlock()
		if calls >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("mirror stopped retrying")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case up := <-ups:
		t.Fatalf("second update during one outage: %+v", up)
	default:
	}
	f.setSnapshot(Snapshot{Revision: 15, KVs: []KeyValue{{Key: "/p/a", Value: "1"}}}, nil)
	up := ups.next(t)
	if up.Err != nil || !up.Resync || len(up.Changes) != 0 || up.Revision != 15 {
		t.Fatalf("recovery update = %+v, want an empty resync clearing the error", up)
	}
}

func TestMirrorRefusesBadArguments(t *testing.T) {
	f := newGoKitFake()
	defer f.close()
	noop := func(Update) {}
	if _, err := NewMirror(context.Background(), nil, "/p/", nil, noop); err == nil {
		t.Error("nil client accepted")
	}
	if _, err := NewMirror(context.Background(), f, "/p/", nil, nil); err == nil {
		t.Error("nil handler accepted")
	}
	if _, err := NewMirror(context.Background(), f, "", nil, noop); !errors.Is(err, ErrNoPrefix) {
		t.Errorf("empty prefix: err = %v", err)
	}
}
