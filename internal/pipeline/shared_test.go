package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/internal/itest"
)

// client stands for an etcd client: Shares compare it by identity.
type client struct{ _ int }

func shareOf(t *testing.T, key ShareKey, src Source, failFast bool) *Tap {
	t.Helper()
	tap, err := Share(context.Background(), key, ShareOptions{
		Source:     func(log.Logger) Source { return src },
		FailFast:   failFast,
		MinBackoff: time.Millisecond,
		MaxBackoff: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tap
}

// follow has a new Feed follow tap, and records its batches.
func follow(t *testing.T, tap *Tap) (*Feed, batches) {
	t.Helper()
	out := make(batches, 64)
	feed := NewFeed(WithObserver(func(b Batch) { out <- b }))
	tap.Follow(feed)
	t.Cleanup(feed.Stop)
	return feed, out
}

func contents(f *Feed) string {
	var out []string
	for _, ch := range f.Contents() {
		out = append(out, ch.Key+"="+ch.Value)
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

func TestSharedMirrorReadsOnceForEveryTapAndStopsWithTheLast(t *testing.T) {
	src := newScriptedSource(10, KV{Key: "/p/a", Value: "1:1", ModRev: 5})
	key := ShareKey{Client: &client{}, Prefix: "/p/"}
	a := shareOf(t, key, src, true)
	b := shareOf(t, key, src, true)
	<-src.watches
	if n := src.calls(); n != 1 {
		t.Fatalf("%d snapshots for two taps of one key, want 1", n)
	}
	if n := shares(); n != 1 {
		t.Fatalf("%d shared mirrors, want 1", n)
	}
	a.Close()
	if n := shares(); n != 1 {
		t.Fatalf("%d shared mirrors after the first Close, want 1", n)
	}
	b.Close()
	b.Close()
	if n := shares(); n != 0 {
		t.Fatalf("%d shared mirrors after the last Close, want 0", n)
	}
}

func TestSharedJoinerIsFilledFromMemoryAtTheSharedRevision(t *testing.T) {
	src := newScriptedSource(10, KV{Key: "/p/a", Value: "1:1", ModRev: 5})
	key := ShareKey{Client: &client{}, Prefix: "/p/"}
	a := shareOf(t, key, src, true)
	defer a.Close()
	fa, _ := follow(t, a)
	w := <-src.watches
	w <- response{rev: 12, changes: []Change{{Op: Put, Key: "/p/b", Value: "2:2", Rev: 11}, {Op: Put, Key: "/p/a", Value: "1:1", Rev: 12}}}
	itest.Eventually(t, 5*time.Second, "the first follower at revision 12", func() bool { return fa.Revision() == 12 })

	b := shareOf(t, key, src, true)
	defer b.Close()
	fb, out := follow(t, b)
	first := out.next(t)
	if !first.Reset || first.Rev != 12 {
		t.Fatalf("joiner's first batch = %+v, want a reset at 12", first)
	}
	// The revisions a snapshot would give: the last put of each value.
	slices.SortFunc(first.Changes, func(x, y Change) int { return strings.Compare(x.Key, y.Key) })
	if got := describe(first.Changes); got != "put /p/a=1:1@12; put /p/b=2:2@11; " {
		t.Fatalf("joiner's first changes = %s", got)
	}
	if n := src.calls(); n != 1 {
		t.Fatalf("the joiner read etcd: %d snapshots, want 1", n)
	}
	if contents(fa) != contents(fb) || fa.Revision() != fb.Revision() {
		t.Fatalf("joiner %q@%d, first follower %q@%d", contents(fb), fb.Revision(), contents(fa), fa.Revision())
	}
	w <- response{rev: 13, changes: []Change{{Op: Delete, Key: "/p/a", Rev: 13}}}
	if got := describe(out.next(t).Changes); got != "delete /p/a=1:1@13; " {
		t.Fatalf("joiner's next changes = %s", got)
	}
}

func TestSharedFollowerCloseDoesNotDisturbTheOthers(t *testing.T) {
	src := newScriptedSource(10)
	key := ShareKey{Client: &client{}, Prefix: "/p/"}
	a, b := shareOf(t, key, src, true), shareOf(t, key, src, true)
	defer a.Close()
	_, outA := follow(t, a)
	_, outB := follow(t, b)
	outA.next(t)
	outB.next(t)
	w := <-src.watches
	b.Close()
	w <- response{rev: 11, changes: []Change{{Op: Put, Key: "/p/a", Value: "1:1", Rev: 11}}}
	if got := describe(outA.next(t).Changes); got != "put /p/a=1:1@11; " {
		t.Fatalf("remaining follower's changes = %s", got)
	}
	select {
	case x := <-outB:
		t.Fatalf("closed tap's follower got %+v", x)
	default:
	}
}

func TestSharedFollowersKeepTheirOwnParser(t *testing.T) {
	src := newScriptedSource(10, KV{Key: "/p/a", Value: "1:1", ModRev: 5}, KV{Key: "/p/b", Value: "{bad", ModRev: 6})
	key := ShareKey{Client: &client{}, Prefix: "/p/"}
	a, b := shareOf(t, key, src, true), shareOf(t, key, src, true)
	defer a.Close()
	defer b.Close()
	strict := NewFeed()
	defer strict.Stop()
	a.Follow(strict)
	lax := NewFeed(WithParser(rawValue))
	defer lax.Stop()
	b.Follow(lax)
	if got := contents(strict); got != "/p/a=1:1" {
		t.Fatalf("strict follower = %q", got)
	}
	if got := contents(lax); got != "/p/a=1:1 /p/b={bad" {
		t.Fatalf("lax follower = %q", got)
	}
}

func TestSharedMirrorsAreKeyedByClientIdentityAndKind(t *testing.T) {
	src := newScriptedSource(10)
	c := &client{}
	taps := []*Tap{
		shareOf(t, ShareKey{Client: c, Prefix: "/p/"}, src, true),
		shareOf(t, ShareKey{Client: &client{}, Prefix: "/p/"}, src, true),
		shareOf(t, ShareKey{Client: c, Prefix: "/p/", Kind: "other"}, src, true),
		shareOf(t, ShareKey{Client: client{}, Prefix: "/p/"}, src, true), // no identity: its own
		shareOf(t, ShareKey{Client: client{}, Prefix: "/p/"}, src, true),
	}
	if n := src.calls(); n != 5 {
		t.Fatalf("%d snapshots, want 5 (one per distinct key, one per client without identity)", n)
	}
	if n := shares(); n != 3 {
		t.Fatalf("%d shared mirrors registered, want 3", n)
	}
	for _, tap := range taps {
		tap.Close()
	}
	if n := shares(); n != 0 {
		t.Fatalf("%d shared mirrors after every Close, want 0", n)
	}
}

func TestSharedFailFastJoinerFailsWhileTheSharedReadFailsAndJoinsOnceItReads(t *testing.T) {
	src := newScriptedSource(0)
	src.set(0, errors.New("connection refused"))
	key := ShareKey{Client: &client{}, Prefix: "/p/"}
	retrying, err := Share(context.Background(), key, ShareOptions{Source: func(log.Logger) Source { return src }, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err == nil {
		t.Fatal("the retrying starter reports no error for a failed first read")
	}
	defer retrying.Close()
	feed, out := follow(t, retrying)
	if b := out.next(t); b.Err == nil {
		t.Fatalf("follower of a failing mirror got %+v, want its error", b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Share(ctx, key, ShareOptions{FailFast: true}); err == nil || ctx.Err() != nil {
		t.Fatalf("fail-fast joiner of a failing mirror: err %v, ctx %v; want the next read's error before ctx ends", err, ctx.Err())
	}
	src.set(20, nil, KV{Key: "/p/a", Value: "1:1", ModRev: 20})
	joiner, err := Share(ctx, key, ShareOptions{FailFast: true})
	if err != nil {
		t.Fatalf("fail-fast joiner once the mirror reads: %v", err)
	}
	defer joiner.Close()
	// The follower has an observer: its queue fills it in its own time.
	itest.Eventually(t, 5*time.Second, "the retrying follower filled in", func() bool { return contents(feed) == "/p/a=1:1" })
	if n := shares(); n != 1 {
		t.Fatalf("%d shared mirrors, want 1", n)
	}
}

func TestSharedFailFastStarterFailureLeavesNothingBehind(t *testing.T) {
	src := newScriptedSource(0)
	src.set(0, errors.New("connection refused"))
	key := ShareKey{Client: &client{}, Prefix: "/p/"}
	if _, err := Share(context.Background(), key, ShareOptions{Source: func(log.Logger) Source { return src }, FailFast: true}); err == nil {
		t.Fatal("fail-fast Share succeeded without a first read")
	}
	if n := shares(); n != 0 {
		t.Fatalf("%d shared mirrors after a failed start, want 0", n)
	}
}

// quietSource has a fixed content and a watch that waits for its end.
type quietSource struct {
	snapshots, watching atomic.Int64
}

func (s *quietSource) Snapshot(context.Context) (int64, []KV, error) {
	s.snapshots.Add(1)
	return 10, []KV{{Key: "/p/a", Value: "1:1", ModRev: 10}}, nil
}

func (s *quietSource) Watch(ctx context.Context, _ int64, _ func(WatchResponse)) error {
	s.watching.Add(1)
	defer s.watching.Add(-1)
	<-ctx.Done()
	return ctx.Err()
}

func TestSharedConcurrentJoinsAndLeavesLeaveNoMirrorBehind(t *testing.T) {
	src := &quietSource{}
	key := ShareKey{Client: &client{}, Prefix: "/p/"}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				tap, err := Share(context.Background(), key, ShareOptions{Source: func(log.Logger) Source { return src }, FailFast: g%2 == 0})
				if err != nil {
					errs <- err
					return
				}
				feed := NewFeed()
				tap.Follow(feed)
				if got := contents(feed); got != "/p/a=1:1" {
					errs <- fmt.Errorf("goroutine %d, round %d: joiner holds %q", g, i, got)
				}
				tap.Close()
				feed.Stop()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := shares(); n != 0 {
		t.Fatalf("%d shared mirrors after every Close, want 0", n)
	}
	if n := src.watching.Load(); n != 0 {
		t.Fatalf("%d watches still open after every Close", n)
	}
}

func TestSharedMirrorReportsResyncsWatchErrorsAndResumesToEveryTapsMetrics(t *testing.T) {
	src := newScriptedSource(10, KV{Key: "/p/a", Value: "1:1", ModRev: 5})
	key := ShareKey{Client: &client{}, Prefix: "/p/"}
	var recs []testMetrics
	for range 2 {
		m, rec := newTestMetrics()
		tap, err := Share(context.Background(), key, ShareOptions{
			Source:     func(log.Logger) Source { return src },
			FailFast:   true,
			Metrics:    m,
			MinBackoff: time.Millisecond,
			MaxBackoff: 5 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer tap.Close()
		recs = append(recs, rec)
	}
	w := watchOf(t, src)
	send(t, w, response{down: errors.New("etcd unreachable")})
	send(t, w, response{rev: 11, current: true})
	src.set(20, nil, KV{Key: "/p/a", Value: "1:1", ModRev: 5})
	send(t, w, response{err: fmt.Errorf("watch: %w", ErrCompacted)})
	watchOf(t, src)
	for i, rec := range recs {
		if got := rec.watchErrors.value(""); got != 1 {
			t.Errorf("tap %d: watch errors %v, want 1", i, got)
		}
		if got := rec.resumes.value(""); got != 1 {
			t.Errorf("tap %d: resumes %v, want 1", i, got)
		}
		if got := rec.resyncs.value("cause=compacted"); got != 1 {
			t.Errorf("tap %d: resyncs{cause=compacted} %v, want 1", i, got)
		}
	}
}

func TestSharedFailFastJoinerOfAMirrorResumingAfterAnOutageFailsWithItsOwnRead(t *testing.T) {
	src := newScriptedSource(10, KV{Key: "/p/a", Value: "1:1", ModRev: 5})
	key := ShareKey{Client: &client{}, Prefix: "/p/"}
	first := shareOf(t, key, src, true)
	defer first.Close()
	w := watchOf(t, src)
	send(t, w, response{down: errors.New("etcd unreachable")})
	itest.Eventually(t, 5*time.Second, "the outage forwarded", func() bool { return first.s.currentErr() != nil })

	// The Mirror waits for its watch to resume and reads nothing: the
	// joiner's own read is the one that fails.
	src.set(0, errors.New("read prefix \"/p/\": etcd unreachable"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Share(ctx, key, ShareOptions{FailFast: true}); err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "etcd unreachable") {
		t.Fatalf("fail-fast joiner of a resuming mirror: err %v, ctx %v; want its read's error before ctx ends", err, ctx.Err())
	}

	// Once etcd answers, the joiner waits for the Mirror to catch up.
	src.set(11, nil, KV{Key: "/p/a", Value: "1:1", ModRev: 5})
	joined := make(chan error, 1)
	go func() {
		tap, err := Share(ctx, key, ShareOptions{FailFast: true})
		if err == nil {
			tap.Close()
		}
		joined <- err
	}()
	select {
	case err := <-joined:
		t.Fatalf("the joiner returned (err %v) while the mirror still fails", err)
	case <-time.After(100 * time.Millisecond):
	}
	send(t, w, response{rev: 11, current: true})
	select {
	case err := <-joined:
		if err != nil {
			t.Fatalf("fail-fast joiner once the mirror caught up: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the joiner still waits after the mirror caught up")
	}
}
