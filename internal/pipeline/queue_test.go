package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/internal/itest"
)

// heldObserver is an observer that records what it is handed, and, while
// held, waits for release after recording.
type heldObserver struct {
	mu      sync.Mutex
	got     []string
	rev     int64
	held    bool
	release chan struct{}
}

func newHeldObserver() *heldObserver { return &heldObserver{release: make(chan struct{})} }

func (r *heldObserver) observe(b Batch) {
	r.mu.Lock()
	r.got = append(r.got, summary(b))
	r.rev = b.Rev
	held := r.held
	r.mu.Unlock()
	if held {
		<-r.release
	}
}

func (r *heldObserver) hold() {
	r.mu.Lock()
	r.held = true
	r.mu.Unlock()
}

// unhold lets the observer go on, at once and from now on; it is
// idempotent, for cleanups.
func (r *heldObserver) unhold() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held {
		r.held = false
		close(r.release)
	}
}

func (r *heldObserver) batches() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *heldObserver) revision() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rev
}

// summary is what an observer can tell of a batch, At aside.
func summary(b Batch) string {
	changes := slices.Clone(b.Changes)
	if b.Reset {
		slices.SortFunc(changes, func(x, y Change) int { return strings.Compare(x.Key, y.Key) })
	}
	return fmt.Sprintf("rev %d reset %v resync %v err %v: %s", b.Rev, b.Reset, b.Resync, b.Err, describe(changes))
}

// send hands r to a scripted watch, failing if the Mirror does not take it
// within 5 s (a Mirror held back by a follower takes nothing).
func send(t *testing.T, w chan response, r response) {
	t.Helper()
	select {
	case w <- r:
	case <-time.After(5 * time.Second):
		t.Fatalf("the mirror did not take the response at %d within 5s: held back", r.rev)
	}
}

// watchOf returns the next watch of src, failing after 5 s.
func watchOf(t *testing.T, src *scriptedSource) chan response {
	t.Helper()
	select {
	case w := <-src.watches:
		return w
	case <-time.After(5 * time.Second):
		t.Fatal("no watch within 5s")
		return nil
	}
}

func TestSharedFollowerWithAHeldObserverHoldsBackNoOtherAndGetsEveryBatchInOrder(t *testing.T) {
	src := newScriptedSource(10, KV{Key: "/p/a", Value: "1:1", ModRev: 5})
	key := ShareKey{Client: &client{}, Prefix: "/p/"}
	slowTap, fastTap, plainTap := shareOf(t, key, src, true), shareOf(t, key, src, true), shareOf(t, key, src, true)
	slow, fast := newHeldObserver(), newHeldObserver()
	slowFeed, fastFeed, plain := NewFeed(WithObserver(slow.observe)), NewFeed(WithObserver(fast.observe)), NewFeed()
	// Cleanups run last first: release the observer, then close, then stop.
	t.Cleanup(func() { slowFeed.Stop(); fastFeed.Stop(); plain.Stop() })
	t.Cleanup(func() { slowTap.Close(); fastTap.Close(); plainTap.Close() })
	t.Cleanup(slow.unhold)
	slowTap.Follow(slowFeed)
	fastTap.Follow(fastFeed)
	plainTap.Follow(plain)
	slow.hold()

	w := watchOf(t, src)
	send(t, w, response{rev: 11, changes: []Change{{Op: Put, Key: "/p/b", Value: "2:2", Rev: 11}}})
	send(t, w, response{rev: 12, changes: []Change{{Op: Delete, Key: "/p/a", Rev: 12}}})
	itest.Eventually(t, 5*time.Second, "the fast follower at 12", func() bool { return fast.revision() == 12 })
	// A joiner while the slow follower is behind: filled at the root's
	// revision, then handed what follows, in order.
	joinTap := shareOf(t, key, src, true)
	joiner := newHeldObserver()
	joinFeed := NewFeed(WithObserver(joiner.observe))
	t.Cleanup(joinFeed.Stop)
	t.Cleanup(joinTap.Close)
	joinTap.Follow(joinFeed)
	// A resync, an error, and changes after them.
	src.set(20, nil, KV{Key: "/p/b", Value: "2:2", ModRev: 11}, KV{Key: "/p/c", Value: "3:3", ModRev: 19})
	send(t, w, response{err: fmt.Errorf("watch: %w", ErrCompacted)})
	send(t, watchOf(t, src), response{err: errors.New("connection lost")})
	send(t, watchOf(t, src), response{rev: 21, changes: []Change{{Op: Put, Key: "/p/d", Value: "4:4", Rev: 21}, {Op: Put, Key: "/p/b", Value: "2:3", Rev: 21}}, current: true})

	itest.Eventually(t, 5*time.Second, "the fast follower at 21", func() bool { return fast.revision() == 21 })
	itest.Eventually(t, 5*time.Second, "the plain follower at 21", func() bool { return plain.Revision() == 21 })
	itest.Eventually(t, 5*time.Second, "the joiner at 21", func() bool { return joiner.revision() == 21 })
	if n := len(slow.batches()); n != 2 {
		t.Fatalf("the held observer got %d batches, want 2 (the fill, the one it is held in)", n)
	}
	slow.unhold()
	itest.Eventually(t, 5*time.Second, "the slow follower at 21", func() bool { return slow.revision() == 21 })

	want := fast.batches()
	for _, part := range []string{
		"rev 10 reset true resync true err <nil>: put /p/a=1:1@5; ",
		"rev 11 reset false resync false err <nil>: put /p/b=2:2@11; ",
		"rev 12 reset false resync false err <nil>: delete /p/a=1:1@12; ",
		"rev 20 reset false resync true err <nil>: put /p/c=3:3@19; ",
		"rev 20 reset false resync false err connection lost: ",
		"rev 21 reset false resync false err <nil>: put /p/d=4:4@21; put /p/b=2:3@21; ",
	} {
		if !slices.Contains(want, part) {
			t.Fatalf("the fast follower was not handed %q; it got:\n%s", part, strings.Join(want, "\n"))
		}
	}
	if got := slow.batches(); !slices.Equal(got, want) {
		t.Errorf("the slow follower's batches:\n%s\nwant the fast one's:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	joined := slices.Index(want, "rev 12 reset false resync false err <nil>: delete /p/a=1:1@12; ")
	wantJoiner := append([]string{"rev 12 reset true resync true err <nil>: put /p/b=2:2@11; "}, want[joined+1:]...)
	if got := joiner.batches(); !slices.Equal(got, wantJoiner) {
		t.Errorf("the joiner's batches:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantJoiner, "\n"))
	}
}

func TestSharedObserverMayFollowTheMirrorItObserves(t *testing.T) {
	src := newScriptedSource(10, KV{Key: "/p/a", Value: "1:1", ModRev: 5})
	key := ShareKey{Client: &client{}, Prefix: "/p/"}
	tap := shareOf(t, key, src, true)
	joined := make(chan *Tap, 2)
	var feeds []*Feed
	// On each batch, the observer starts a consumer of the same key, as a
	// Pool callback that starts an Instancer of its prefix does.
	feed := NewFeed(WithObserver(func(Batch) {
		inner, err := Share(context.Background(), key, ShareOptions{FailFast: true})
		if err != nil {
			t.Error(err)
			return
		}
		f := NewFeed()
		inner.Follow(f)
		feeds = append(feeds, f)
		joined <- inner
	}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		tap.Follow(feed) // the fill: the observer's first join
		select {
		case w := <-src.watches:
			w <- response{rev: 11, changes: []Change{{Op: Put, Key: "/p/b", Value: "2:2", Rev: 11}}}
		case <-time.After(5 * time.Second):
			t.Error("no watch within 5s")
		}
	}()
	var inner []*Tap
	for len(inner) < 2 {
		select {
		case tp := <-joined:
			inner = append(inner, tp)
		case <-time.After(5 * time.Second):
			// Deadlocked: leave everything as it is, for the report.
			t.Fatalf("the observer joined %d times within 5s, want 2: deadlocked", len(inner))
		}
	}
	<-done
	tap.Close()
	feed.Stop()
	for _, tp := range inner {
		tp.Close()
	}
	for _, f := range feeds {
		if got := contents(f); got != "/p/a=1:1" && got != "/p/a=1:1 /p/b=2:2" {
			t.Errorf("a consumer started by the observer holds %q", got)
		}
		f.Stop()
	}
	if n := shares(); n != 0 {
		t.Fatalf("%d shared mirrors after every Close, want 0", n)
	}
}

func TestSharedTapCloseWaitsForItsFollowersObserverWhileTheMirrorGoesOn(t *testing.T) {
	src := newScriptedSource(10)
	key := ShareKey{Client: &client{}, Prefix: "/p/"}
	slowTap, otherTap := shareOf(t, key, src, true), shareOf(t, key, src, true)
	slow := newHeldObserver()
	slowFeed, other := NewFeed(WithObserver(slow.observe)), NewFeed()
	t.Cleanup(func() { slowFeed.Stop(); other.Stop() })
	t.Cleanup(func() { slowTap.Close(); otherTap.Close() })
	t.Cleanup(slow.unhold)
	slowTap.Follow(slowFeed)
	otherTap.Follow(other)
	slow.hold()
	w := watchOf(t, src)
	send(t, w, response{rev: 11, changes: []Change{{Op: Put, Key: "/p/a", Value: "1:1", Rev: 11}}})
	itest.Eventually(t, 5*time.Second, "the held observer handed the batch at 11", func() bool { return slow.revision() == 11 })

	closed := make(chan struct{})
	go func() {
		defer close(closed)
		slowTap.Close()
	}()
	// The Mirror goes on for the other Tap while the Close waits.
	send(t, w, response{rev: 12, changes: []Change{{Op: Put, Key: "/p/b", Value: "2:2", Rev: 12}}})
	itest.Eventually(t, 5*time.Second, "the other follower at 12", func() bool { return other.Revision() == 12 })
	select {
	case <-closed:
		t.Fatal("Close returned while its follower's observer was running")
	case <-time.After(50 * time.Millisecond):
	}
	slow.unhold()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5s of the observer's return")
	}
	handed := len(slow.batches())
	send(t, w, response{rev: 13, changes: []Change{{Op: Put, Key: "/p/c", Value: "3:3", Rev: 13}}})
	itest.Eventually(t, 5*time.Second, "the other follower at 13", func() bool { return other.Revision() == 13 })
	if got := slow.batches(); len(got) != handed {
		t.Fatalf("the closed follower's observer was handed more after Close:\n%s", strings.Join(got[handed:], "\n"))
	}
}
