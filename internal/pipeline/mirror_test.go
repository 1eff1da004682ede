package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// scriptedSource is a Source driven by the test: it sets what snapshots
// return and pushes watch responses.
type scriptedSource struct {
	mu        sync.Mutex
	rev       int64
	kvs       []KV
	err       error
	snapCalls int

	watches  chan chan response // each Watch call hands its channel here
	fromRevs chan int64
}

// response is one scripted watch response, an outage the watch stays open
// through (down), or the error ending the watch.
type response struct {
	rev     int64
	changes []Change
	current bool
	down    error
	err     error
}

func newScriptedSource(rev int64, kvs ...KV) *scriptedSource {
	return &scriptedSource{rev: rev, kvs: kvs, watches: make(chan chan response, 16), fromRevs: make(chan int64, 16)}
}

func (s *scriptedSource) Snapshot(context.Context) (int64, []KV, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapCalls++
	return s.rev, s.kvs, s.err
}

func (s *scriptedSource) set(rev int64, err error, kvs ...KV) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rev, s.kvs, s.err = rev, kvs, err
}

func (s *scriptedSource) calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapCalls
}

func (s *scriptedSource) Watch(ctx context.Context, rev int64, apply func(WatchResponse)) error {
	in := make(chan response)
	s.watches <- in
	s.fromRevs <- rev
	for {
		select {
		case r := <-in:
			if r.err != nil {
				return r.err
			}
			apply(WatchResponse{Rev: r.rev, Changes: r.changes, Current: r.current, Err: r.down})
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// batches collects what a Feed hands to its observer.
type batches chan Batch

func (b batches) next(t *testing.T) Batch {
	t.Helper()
	select {
	case x := <-b:
		return x
	case <-time.After(5 * time.Second):
		t.Fatal("no batch within 5s")
		return Batch{}
	}
}

func startMirror(t *testing.T, src Source) (*Mirror, batches) {
	t.Helper()
	out := make(batches, 64)
	feed := NewFeed(WithObserver(func(b Batch) { out <- b }))
	m, err := Start(context.Background(), src, feed, nil, time.Millisecond, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop(); feed.Stop() })
	return m, out
}

func describe(changes []Change) string {
	s := ""
	for _, c := range changes {
		s += fmt.Sprintf("%v %s=%s@%d; ", c.Op, c.Key, c.Value, c.Rev)
	}
	return s
}

func TestMirrorAppliesWatchEventsByKeyFromSnapshotRevision(t *testing.T) {
	src := newScriptedSource(10, KV{Key: "/p/a", Value: "1:1", ModRev: 5})
	m, out := startMirror(t, src)
	if b := out.next(t); b.Rev != 10 || !b.Reset || describe(b.Changes) != "put /p/a=1:1@5; " {
		t.Fatalf("initial batch = %+v", b)
	}
	w := <-src.watches
	if rev := <-src.fromRevs; rev != 11 {
		t.Fatalf("watch starts at %d, want snapshot revision + 1 = 11", rev)
	}
	w <- response{rev: 12, changes: []Change{
		{Op: Put, Key: "/p/a", Value: "2:2", Rev: 11},
		{Op: Put, Key: "/p/b", Value: "3:3", Rev: 12},
	}}
	b := out.next(t)
	if got := describe(b.Changes); got != "put /p/a=2:2@11; put /p/b=3:3@12; " {
		t.Fatalf("changes = %s", got)
	}
	if b.Changes[1].Instance.Address != "3:3" {
		t.Fatalf("instance not parsed: %+v", b.Changes[1])
	}
	// An event already reflected (at or below the feed's revision) is not
	// applied twice; a delete carries the value deleted.
	w <- response{rev: 13, changes: []Change{
		{Op: Put, Key: "/p/b", Value: "3:3", Rev: 12},
		{Op: Delete, Key: "/p/a", Rev: 13},
	}}
	if got := describe(out.next(t).Changes); got != "delete /p/a=2:2@13; " {
		t.Fatalf("changes = %s", got)
	}
	if rev := m.Feed().Revision(); rev != 13 {
		t.Fatalf("revision = %d, want 13", rev)
	}
}

func TestMirrorResyncsAfterCompactionWithTheNetDifferenceInRevisionOrder(t *testing.T) {
	src := newScriptedSource(10, KV{Key: "/p/a", Value: "1:1", ModRev: 3}, KV{Key: "/p/b", Value: "2:2", ModRev: 4})
	_, out := startMirror(t, src)
	out.next(t)
	w := <-src.watches
	<-src.fromRevs
	src.set(30, nil, KV{Key: "/p/b", Value: "2:2", ModRev: 4}, KV{Key: "/p/d", Value: "4:4", ModRev: 27}, KV{Key: "/p/c", Value: "3:3", ModRev: 25})
	w <- response{err: fmt.Errorf("watch: %w", ErrCompacted)}
	b := out.next(t)
	if b.Err != nil {
		t.Fatalf("compaction reported as an outage: %v", b.Err)
	}
	if !b.Resync || b.Reset || b.Rev != 30 || describe(b.Changes) != "put /p/c=3:3@25; put /p/d=4:4@27; delete /p/a=1:1@30; " {
		t.Fatalf("resync batch = %+v (%s)", b, describe(b.Changes))
	}
	<-src.watches
	if rev := <-src.fromRevs; rev != 31 {
		t.Fatalf("watch resumes at %d, want 31", rev)
	}
}

func TestMirrorInitialBatchIsInRevisionOrder(t *testing.T) {
	src := newScriptedSource(10, KV{Key: "/p/a", Value: "1:1", ModRev: 9}, KV{Key: "/p/b", Value: "2:2", ModRev: 2})
	_, out := startMirror(t, src)
	if got := describe(out.next(t).Changes); got != "put /p/b=2:2@2; put /p/a=1:1@9; " {
		t.Fatalf("initial changes = %s", got)
	}
}

// noBatch fails if a batch is handed over within a moment.
func (b batches) noBatch(t *testing.T, when string) {
	t.Helper()
	select {
	case x := <-b:
		t.Fatalf("batch %s: %+v (%s)", when, x, describe(x.Changes))
	case <-time.After(20 * time.Millisecond):
	}
}

func TestMirrorResumesABrokenWatchFromItsRevisionWithoutASnapshot(t *testing.T) {
	src := newScriptedSource(10, KV{Key: "/p/a", Value: "1:1", ModRev: 5})
	_, out := startMirror(t, src)
	out.next(t)
	w := <-src.watches
	<-src.fromRevs
	w <- response{rev: 12, changes: []Change{{Op: Put, Key: "/p/b", Value: "2:2", Rev: 12}}, current: true}
	out.next(t)
	noLeader := errors.New("etcdserver: no leader")
	w <- response{err: noLeader}
	if b := out.next(t); !errors.Is(b.Err, noLeader) {
		t.Fatalf("broken watch batch = %+v, want its error", b)
	}
	w = <-src.watches
	if rev := <-src.fromRevs; rev != 13 {
		t.Fatalf("watch resumed at %d, want the Feed's revision + 1 = 13", rev)
	}
	// Until the resumed watch has caught up, consumers keep the error and
	// the state they had: no state older than the true one, no error
	// cleared early.
	w <- response{rev: 14, changes: []Change{{Op: Delete, Key: "/p/a", Rev: 14}}}
	w <- response{rev: 15, changes: []Change{{Op: Put, Key: "/p/c", Value: "3:3", Rev: 15}}}
	out.noBatch(t, "before the resumed watch caught up")
	w <- response{rev: 16, current: true}
	b := out.next(t)
	if b.Err != nil || b.Resync || b.Rev != 16 || describe(b.Changes) != "delete /p/a=1:1@14; put /p/c=3:3@15; " {
		t.Fatalf("caught-up batch = %+v (%s), want every held change, at 16, clearing the error", b, describe(b.Changes))
	}
	if n := src.calls(); n != 1 {
		t.Fatalf("%d snapshots read, want only the first", n)
	}
}

func TestMirrorReportsAnOutageOnceAndRecoversWithTheTrueStateWhenTheWatchCatchesUp(t *testing.T) {
	src := newScriptedSource(10, KV{Key: "/p/a", Value: "1:1"})
	_, out := startMirror(t, src)
	out.next(t)
	w := <-src.watches
	<-src.fromRevs
	unreachable := errors.New("etcd unreachable")
	w <- response{down: unreachable}
	if b := out.next(t); !errors.Is(b.Err, unreachable) {
		t.Fatalf("outage batch = %+v", b)
	}
	// The watch stays open through the outage: a second report of it and
	// the changes of the resumed watch bring no batch until it catches up.
	w <- response{down: unreachable}
	w <- response{rev: 11, changes: []Change{{Op: Put, Key: "/p/b", Value: "2:2", Rev: 11}}}
	out.noBatch(t, "during one outage")
	w <- response{rev: 12, changes: []Change{{Op: Put, Key: "/p/a", Value: "1:2", Rev: 12}}, current: true}
	b := out.next(t)
	if b.Err != nil || b.Resync || b.Rev != 12 || describe(b.Changes) != "put /p/b=2:2@11; put /p/a=1:2@12; " {
		t.Fatalf("recovery batch = %+v (%s), want the held changes clearing the error", b, describe(b.Changes))
	}
	if n := src.calls(); n != 1 {
		t.Fatalf("%d snapshots read, want only the first", n)
	}
	// Once caught up, responses are applied as they come.
	w <- response{rev: 13, changes: []Change{{Op: Delete, Key: "/p/b", Rev: 13}}}
	if b := out.next(t); describe(b.Changes) != "delete /p/b=2:2@13; " {
		t.Fatalf("batch after recovery = %+v", b)
	}
}

func TestMirrorReadsOneSnapshotWhenTheResumedWatchIsCompacted(t *testing.T) {
	src := newScriptedSource(10, KV{Key: "/p/a", Value: "1:1", ModRev: 3}, KV{Key: "/p/b", Value: "2:2", ModRev: 4})
	_, out := startMirror(t, src)
	out.next(t)
	w := <-src.watches
	<-src.fromRevs
	w <- response{err: errors.New("etcdserver: no leader")}
	out.next(t)
	w = <-src.watches
	<-src.fromRevs
	w <- response{rev: 11, changes: []Change{{Op: Delete, Key: "/p/a", Rev: 11}}} // held, then dropped
	src.set(30, nil, KV{Key: "/p/b", Value: "2:2", ModRev: 4}, KV{Key: "/p/c", Value: "3:3", ModRev: 25})
	w <- response{err: fmt.Errorf("watch: %w", ErrCompacted)}
	b := out.next(t)
	if b.Err != nil || !b.Resync || b.Rev != 30 || describe(b.Changes) != "put /p/c=3:3@25; delete /p/a=1:1@30; " {
		t.Fatalf("batch after compaction = %+v (%s), want the net difference clearing the error", b, describe(b.Changes))
	}
	if n := src.calls(); n != 2 {
		t.Fatalf("%d snapshots read, want the first and one after the compaction", n)
	}
	<-src.watches
	if rev := <-src.fromRevs; rev != 31 {
		t.Fatalf("watch resumed at %d, want 31", rev)
	}
}

// An etcd that lost the history the Feed was read from (restored from a
// backup at a lower revision, or another cluster) is read again, like a
// compacted one: the snapshot replaces the content even at a lower
// revision, and clears the outage's error.
func TestMirrorReadsOneSnapshotWhenTheResumedWatchFindsTheHistoryLost(t *testing.T) {
	src := newScriptedSource(50, KV{Key: "/p/a", Value: "1:1", ModRev: 49})
	out, rec := startMirrorWithMetrics(t, src)
	out.next(t)
	w := <-src.watches
	<-src.fromRevs
	w <- response{down: errors.New("etcd unreachable")}
	if b := out.next(t); b.Err == nil {
		t.Fatalf("outage batch = %+v, want the error", b)
	}
	src.set(3, nil, KV{Key: "/p/b", Value: "2:2", ModRev: 3})
	w <- response{err: fmt.Errorf("watch: store at revision 3: %w", ErrHistoryLost)}
	b := out.next(t)
	if b.Err != nil || !b.Resync || b.Rev != 3 || describe(b.Changes) != "delete /p/a=1:1@3; put /p/b=2:2@3; " {
		t.Fatalf("batch after the history was lost = %+v (%s), want the new etcd's content clearing the error", b, describe(b.Changes))
	}
	if got := rec.resyncs.value("cause=lost"); got != 1 {
		t.Errorf("resyncs{cause=lost} = %v, want 1", got)
	}
	if n := src.calls(); n != 2 {
		t.Fatalf("%d snapshots read, want the first and one after the history was lost", n)
	}
	<-src.watches
	if rev := <-src.fromRevs; rev != 4 {
		t.Fatalf("watch resumed at %d, want 4", rev)
	}
}

func TestMirrorFailsWhenTheFirstReadFails(t *testing.T) {
	src := newScriptedSource(0)
	src.set(0, errors.New("read prefix \"/p/\": connection refused"))
	feed := NewFeed()
	defer feed.Stop()
	if _, err := Start(context.Background(), src, feed, nil, 0, 0); err == nil {
		t.Fatal("Start succeeded without a first read")
	}
}
