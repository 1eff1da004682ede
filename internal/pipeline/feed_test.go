package pipeline

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"

	"github.com/etcdsd/etcdsd/internal/itest"
)

func recv(t *testing.T, ch <-chan sd.Event) sd.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		return sd.Event{}
	}
}

func noEvent(t *testing.T, ch <-chan sd.Event) {
	t.Helper()
	select {
	case ev := <-ch:
		t.Fatalf("unexpected event %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestFeedNewSubscriberGetsCurrentStateAtOnce(t *testing.T) {
	c := NewFeed()
	defer c.Stop()
	c.Reset(1, []KV{{Key: "/a", Value: "b:1"}, {Key: "/b", Value: "a:1"}}, true)
	ch := make(chan sd.Event, 1)
	c.Register(ch)
	// Register returns only after delivery, so the event is already there.
	select {
	case ev := <-ch:
		if want := []string{"a:1", "b:1"}; !slices.Equal(ev.Instances, want) {
			t.Fatalf("instances = %v, want %v", ev.Instances, want)
		}
	default:
		t.Fatal("Register returned before delivering the current state")
	}
}

func TestFeedSortsAndRemovesDuplicates(t *testing.T) {
	c := NewFeed()
	defer c.Stop()
	c.Apply(0, []Change{{Op: Put, Key: "/3", Value: "c"}, {Op: Put, Key: "/1", Value: "a"}, {Op: Put, Key: "/2", Value: "c"}, {Op: Put, Key: "/4", Value: "b"}})
	if got, want := c.State().Instances, []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("instances = %v, want %v", got, want)
	}
	// Removing one of two keys holding "c" keeps "c".
	c.Apply(0, []Change{{Op: Delete, Key: "/3"}})
	if got, want := c.State().Instances, []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Fatalf("after delete of one holder: %v, want %v", got, want)
	}
	c.Apply(0, []Change{{Op: Put, Key: "/2", Value: "d"}})
	if got, want := c.State().Instances, []string{"a", "b", "d"}; !slices.Equal(got, want) {
		t.Fatalf("after modify: %v, want %v", got, want)
	}
}

func TestFeedSendsOnlyOnChange(t *testing.T) {
	c := NewFeed()
	defer c.Stop()
	ch := make(chan sd.Event, 10)
	c.Register(ch)
	recv(t, ch)
	c.Apply(0, []Change{{Op: Put, Key: "/a", Value: "x"}})
	if ev := recv(t, ch); !slices.Equal(ev.Instances, []string{"x"}) {
		t.Fatalf("got %v", ev.Instances)
	}
	c.Apply(0, []Change{{Op: Put, Key: "/a", Value: "x"}})                    // same value again
	c.Apply(0, []Change{{Op: Put, Key: "/b", Value: "x"}})                    // duplicate value
	c.Apply(0, []Change{{Op: Delete, Key: "/nope"}})                          // unknown key
	c.Reset(9, []KV{{Key: "/a", Value: "x"}, {Key: "/b", Value: "x"}}, false) // same set
	noEvent(t, ch)
}

func TestFeedErrorKeepsInstancesAndIsSentOnce(t *testing.T) {
	c := NewFeed()
	defer c.Stop()
	c.Apply(0, []Change{{Op: Put, Key: "/a", Value: "x"}})
	ch := make(chan sd.Event, 10)
	c.Register(ch)
	recv(t, ch)
	boom := errors.New("etcd unreachable")
	c.Fail(boom)
	c.Fail(boom)
	ev := recv(t, ch)
	if ev.Err == nil || !slices.Equal(ev.Instances, []string{"x"}) {
		t.Fatalf("error event = %+v, want err with last instances", ev)
	}
	noEvent(t, ch)
	// Recovery with the same instances still clears the error.
	c.Reset(3, []KV{{Key: "/a", Value: "x"}}, false)
	if ev := recv(t, ch); ev.Err != nil || !slices.Equal(ev.Instances, []string{"x"}) {
		t.Fatalf("recovery event = %+v", ev)
	}
}

func TestFeedStuckSubscriberBlocksNobody(t *testing.T) {
	c := NewFeed()
	defer c.Stop()
	stuck := make(chan sd.Event) // unbuffered; read once, then left alone
	go func() { <-stuck }()
	c.Register(stuck)
	live := make(chan sd.Event, 1)
	c.Register(live)
	recv(t, live)
	for i := range 1000 {
		done := make(chan struct{})
		go func() {
			c.Apply(0, []Change{{Op: Put, Key: "/k", Value: fmt.Sprint(i)}})
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatalf("Apply %d blocked on a stuck subscriber", i)
		}
		if ev := recv(t, live); !slices.Equal(ev.Instances, []string{fmt.Sprint(i)}) {
			t.Fatalf("live subscriber got %v, want [%d]", ev.Instances, i)
		}
	}
	// When the stuck one reads again, it gets the latest state, not the
	// backlog: at most the one state its goroutine had committed to a send
	// if it was descheduled just then, and the latest right after.
	latestWithin(t, stuck, []string{"999"})
}

// latestWithin reads ch and fails unless the latest state want comes within
// two reads, the second one immediately available.
func latestWithin(t *testing.T, ch <-chan sd.Event, want []string) {
	t.Helper()
	ev := recv(t, ch)
	if slices.Equal(ev.Instances, want) {
		return
	}
	select {
	case next := <-ch:
		if !slices.Equal(next.Instances, want) {
			t.Fatalf("reads after a stall got %v then %v, want %v", ev.Instances, next.Instances, want)
		}
	case <-time.After(time.Second):
		t.Fatalf("read after a stall got %v, and no latest state %v followed", ev.Instances, want)
	}
}

func TestFeedDeregisterStopsDelivery(t *testing.T) {
	c := NewFeed()
	defer c.Stop()
	ch := make(chan sd.Event, 10)
	c.Register(ch)
	recv(t, ch)
	c.Deregister(ch)
	c.Deregister(ch) // idempotent
	c.Apply(0, []Change{{Op: Put, Key: "/a", Value: "x"}})
	noEvent(t, ch)
}

func TestFeedStopUnblocksPendingRegister(t *testing.T) {
	c := NewFeed()
	ch := make(chan sd.Event) // never read
	returned := make(chan struct{})
	go func() {
		c.Register(ch)
		close(returned)
	}()
	itest.Eventually(t, 5*time.Second, "subscriber registered", func() bool { return c.subscribers() > 0 })
	c.Stop()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("Register still blocked after Stop")
	}
}

func TestFeedLargeBatchMatchesIncremental(t *testing.T) {
	a, b := NewFeed(), NewFeed()
	defer a.Stop()
	defer b.Stop()
	var batch []Change
	for i := range 500 {
		ch := Change{Op: Put, Key: fmt.Sprintf("/k%d", i%300), Value: fmt.Sprintf("v%d", i%170)}
		if i%7 == 0 {
			ch = Change{Op: Delete, Key: fmt.Sprintf("/k%d", i%50)}
		}
		batch = append(batch, ch)
		a.Apply(0, []Change{ch})
	}
	b.Apply(0, batch)
	if !slices.Equal(a.State().Instances, b.State().Instances) {
		t.Fatalf("incremental and batch results differ:\n%v\n%v", a.State().Instances, b.State().Instances)
	}
	if !slices.IsSorted(b.State().Instances) {
		t.Fatal("not sorted")
	}
}

// BenchmarkFeedChangeToSubscriber10k measures one change among 10,000
// instances from Apply until a go-kit subscriber has the new state.
func BenchmarkFeedChangeToSubscriber10k(b *testing.B) {
	c := NewFeed()
	defer c.Stop()
	kvs := make([]KV, 10000)
	for i := range kvs {
		kvs[i] = KV{Key: fmt.Sprintf("/svc/%05d", i), Value: fmt.Sprintf("10.0.%d.%d:8080", i/256, i%256), ModRev: 1}
	}
	c.Reset(1, kvs, true)
	ch := make(chan sd.Event, 1)
	c.Register(ch)
	<-ch
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Apply(0, []Change{{Op: Put, Key: "/svc/00042", Value: fmt.Sprintf("10.9.9.9:%d", i%2)}})
		<-ch
	}
}

// subscribers reports how many channels are registered.
func (f *Feed) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.events.subs)
}

// A Filter (etcdsd's properties) may change the instance consumers see of
// a key without changing its value, as a weight override does:
// Subscriptions get the typed change, go-kit subscribers, whose values did
// not change, get nothing.
func TestFeedRefilterOfTheSameValueWithAnotherInstanceSendsGoKitNothing(t *testing.T) {
	o := newOverride()
	c := NewFeed(WithFilter(o.filter))
	defer c.Stop()
	c.Apply(1, []Change{{Op: Put, Key: "/a", Value: "a:1", Rev: 1}})
	ch := make(chan sd.Event, 4)
	c.Register(ch)
	recv(t, ch)
	sub := c.Subscribe()
	defer sub.Close()
	sub.Take()

	o.set("/a", 5, false)
	c.Refilter()
	b := sub.Take()
	if len(b.Changes) != 1 || b.Changes[0].Instance.Weight != 5 || b.Changes[0].Value != "a:1" || b.Changes[0].Prev != "a:1" {
		t.Fatalf("subscription batch %+v, want the put of a:1 with weight 5", b)
	}
	noEvent(t, ch)
	c.Refilter()
	if b := sub.Take(); len(b.Changes) != 0 {
		t.Fatalf("the same instance again gave %+v", b)
	}
}

func TestFeedRegisterOfARegisteredChannelSendsTheCurrentStateAgainAndAddsNoSubscriber(t *testing.T) {
	c := NewFeed()
	defer c.Stop()
	c.Reset(1, []KV{{Key: "/a", Value: "a:1"}}, true)
	ch := make(chan sd.Event, 4)
	c.Register(ch)
	c.Register(ch)
	for range 2 {
		if ev := recv(t, ch); !slices.Equal(ev.Instances, []string{"a:1"}) {
			t.Fatalf("instances = %v, want [a:1] from each Register", ev.Instances)
		}
	}
	c.Apply(2, []Change{{Op: Put, Key: "/b", Value: "b:1"}})
	if ev := recv(t, ch); !slices.Equal(ev.Instances, []string{"a:1", "b:1"}) {
		t.Fatalf("instances = %v after a change, want [a:1 b:1]", ev.Instances)
	}
	noEvent(t, ch) // one subscriber: one event per change
	c.Deregister(ch)
	c.Apply(3, []Change{{Op: Put, Key: "/c", Value: "c:1"}})
	noEvent(t, ch)
}
