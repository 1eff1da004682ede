package pipeline

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/instance"
)

func put(key, value string, rev int64) Change {
	return Change{Op: Put, Key: key, Value: value, Rev: rev}
}

func del(key string, rev int64) Change { return Change{Op: Delete, Key: key, Rev: rev} }

// take waits until sub is ready and takes its batch.
func take(t *testing.T, sub *Subscription) Batch {
	t.Helper()
	select {
	case <-sub.Ready():
		return sub.Take()
	case <-time.After(5 * time.Second):
		t.Fatal("subscription not ready within 5s")
		return Batch{}
	}
}

func notReady(t *testing.T, sub *Subscription) {
	t.Helper()
	select {
	case <-sub.Ready():
		t.Fatalf("subscription ready with %+v", sub.Take())
	default:
	}
}

func keysOf(b Batch) []string {
	var out []string
	for _, ch := range b.Changes {
		out = append(out, ch.Op.String()+" "+ch.Key+"="+ch.Value)
	}
	slices.Sort(out)
	return out
}

func TestSubscriptionStartsWithAResetOfTheWholeContent(t *testing.T) {
	f := NewFeed()
	defer f.Stop()
	f.Reset(7, []KV{{Key: "/a", Value: "a:1", ModRev: 3}, {Key: "/b", Value: `{"address":"b:1","version":"v2"}`, ModRev: 5}}, true)
	sub := f.Subscribe()
	defer sub.Close()
	b := take(t, sub)
	if !b.Reset || b.Rev != 7 || b.Err != nil {
		t.Fatalf("first batch = %+v, want a reset at revision 7", b)
	}
	if got := keysOf(b); !slices.Equal(got, []string{`put /a=a:1`, `put /b={"address":"b:1","version":"v2"}`}) {
		t.Fatalf("reset = %v", got)
	}
	for _, ch := range b.Changes {
		if ch.Key == "/b" && (ch.Instance.Version != "v2" || ch.Instance.Address != "b:1") {
			t.Fatalf("instance not parsed: %+v", ch.Instance)
		}
	}
	notReady(t, sub)
}

func TestSubscriptionCoalescesByKeyWhileItsOwnerIsBusy(t *testing.T) {
	f := NewFeed()
	defer f.Stop()
	f.Reset(1, []KV{{Key: "/a", Value: "a:1"}, {Key: "/b", Value: "b:1"}}, true)
	sub := f.Subscribe()
	defer sub.Close()
	take(t, sub)
	f.Apply(2, []Change{put("/a", "a:2", 2)})
	f.Apply(3, []Change{put("/a", "a:3", 3), put("/c", "c:1", 3)})
	f.Apply(4, []Change{del("/b", 4)})
	f.Apply(5, []Change{put("/d", "d:1", 5)})
	f.Apply(6, []Change{del("/d", 6)})
	b := take(t, sub)
	if b.Reset || b.Rev != 6 {
		t.Fatalf("batch = %+v, want an incremental batch at revision 6", b)
	}
	// /d came and went unseen: nothing is told of it.
	want := []string{"delete /b=b:1", "put /a=a:3", "put /c=c:1"}
	if got := keysOf(b); !slices.Equal(got, want) {
		t.Fatalf("coalesced changes = %v, want %v", got, want)
	}
	for _, ch := range b.Changes {
		if want := map[string]string{"/a": "a:1", "/b": "b:1", "/c": ""}[ch.Key]; ch.Prev != want {
			t.Errorf("%s: Prev = %q, want %q, the value the consumer saw", ch.Key, ch.Prev, want)
		}
	}
	notReady(t, sub)
}

func TestSubscriptionResetAbsorbsLaterChanges(t *testing.T) {
	f := NewFeed()
	defer f.Stop()
	f.Reset(1, []KV{{Key: "/a", Value: "a:1"}, {Key: "/b", Value: "b:1"}}, true)
	sub := f.Subscribe() // its reset is pending, not taken
	defer sub.Close()
	f.Apply(2, []Change{del("/a", 2), put("/c", "c:1", 2), put("/b", "b:2", 2)})
	b := take(t, sub)
	if !b.Reset {
		t.Fatalf("batch = %+v, want the reset still", b)
	}
	if got, want := keysOf(b), []string{"put /b=b:2", "put /c=c:1"}; !slices.Equal(got, want) {
		t.Fatalf("reset = %v, want %v (a deleted key leaves a pending reset)", got, want)
	}
	for _, ch := range b.Changes {
		if ch.Prev != "" {
			// A consumer starting over from the reset would take Prev for
			// something it holds: another key may hold that value.
			t.Fatalf("%s in a reset carries Prev %q, want none", ch.Key, ch.Prev)
		}
	}
}

func TestSubscriptionCarriesTheErrorAndItsClearing(t *testing.T) {
	f := NewFeed()
	defer f.Stop()
	f.Reset(1, []KV{{Key: "/a", Value: "a:1"}}, true)
	sub := f.Subscribe()
	defer sub.Close()
	take(t, sub)
	boom := errors.New("etcd unreachable")
	f.Fail(boom)
	if b := take(t, sub); !errors.Is(b.Err, boom) || len(b.Changes) != 0 {
		t.Fatalf("outage batch = %+v", b)
	}
	late := f.Subscribe()
	defer late.Close()
	if b := take(t, late); !b.Reset || !errors.Is(b.Err, boom) || len(b.Changes) != 1 {
		t.Fatalf("a subscriber arriving during an outage got %+v, want the content and the error", b)
	}
	f.Reset(2, []KV{{Key: "/a", Value: "a:1"}}, false)
	if b := take(t, sub); b.Err != nil || !b.Resync || len(b.Changes) != 0 {
		t.Fatalf("recovery batch = %+v, want an empty resync without error", b)
	}
}

func TestSubscriptionCloseStopsDelivery(t *testing.T) {
	f := NewFeed()
	defer f.Stop()
	sub := f.Subscribe()
	take(t, sub)
	sub.Close()
	sub.Close() // idempotent
	f.Apply(1, []Change{put("/a", "a:1", 1)})
	notReady(t, sub)
}

// override is a Filter whose hidden keys and weights the test sets, then
// calls Refilter.
type override struct {
	mu     sync.Mutex
	weight map[string]int
	hidden map[string]bool
}

func newOverride() *override {
	return &override{weight: map[string]int{}, hidden: map[string]bool{}}
}

func (o *override) filter(key string, inst instance.Instance) (instance.Instance, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if w, ok := o.weight[key]; ok {
		inst.Weight = w
	}
	return inst, !o.hidden[key]
}

func (o *override) set(key string, weight int, hidden bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.weight[key], o.hidden[key] = weight, hidden
}

func TestFeedFilterDecidesWhatSubscribersSeeAndRefilterSendsOnlyChanges(t *testing.T) {
	o := newOverride()
	o.set("/a", 5, false)
	f := NewFeed(WithFilter(o.filter))
	defer f.Stop()
	sub := f.Subscribe()
	defer sub.Close()
	take(t, sub)
	f.Apply(1, []Change{put("/a", `{"address":"a:1"}`, 1)})
	b := take(t, sub)
	if len(b.Changes) != 1 || b.Changes[0].Instance.Weight != 5 || b.Changes[0].Value != `{"address":"a:1"}` {
		t.Fatalf("applied %+v, want the value registered with the filter's weight", b.Changes)
	}
	f.Refilter() // the filter decides as before
	notReady(t, sub)
	o.set("/a", 1, false) // same value, another instance: a change
	f.Refilter()
	if b := take(t, sub); len(b.Changes) != 1 || b.Changes[0].Instance.Weight != 1 || b.Changes[0].Prev != `{"address":"a:1"}` {
		t.Fatalf("refiltered %+v, want the weight change of what the subscriber saw", b.Changes)
	}
	o.set("/a", 1, true)
	f.Refilter()
	if b := take(t, sub); len(b.Changes) != 1 || b.Changes[0].Op != Delete || f.Len() != 0 {
		t.Fatalf("hidden: %+v (len %d), want a delete and nothing seen", b.Changes, f.Len())
	}
	f.Apply(2, []Change{put("/a", "a:2", 2)}) // a hidden key changes: nothing to see
	notReady(t, sub)
	o.set("/a", 1, false)
	f.Refilter()
	if b := take(t, sub); len(b.Changes) != 1 || b.Changes[0].Op != Put || b.Changes[0].Value != "a:2" || b.Changes[0].Prev != "" {
		t.Fatalf("shown again: %+v, want a put of the current value, as new", b.Changes)
	}
}

func TestFeedMalformedValueDeletesTheKeyAndIsLoggedOnce(t *testing.T) {
	logs := &countLogger{}
	f := NewFeed(WithLogger(logs))
	defer f.Stop()
	f.Reset(1, []KV{{Key: "/a", Value: "a:1"}}, true)
	sub := f.Subscribe()
	defer sub.Close()
	take(t, sub)
	f.Apply(2, []Change{put("/a", "{bad", 2)})
	if got := keysOf(take(t, sub)); !slices.Equal(got, []string{"delete /a=a:1"}) {
		t.Fatalf("changes = %v, want the key deleted", got)
	}
	f.Reset(3, []KV{{Key: "/a", Value: "{bad"}}, false)
	f.Apply(4, []Change{put("/a", "{bad", 4)})
	notReady(t, sub)
	if logs.n != 1 {
		t.Fatalf("malformed value logged %d times, want once", logs.n)
	}
	f.Apply(5, []Change{put("/a", "a:2", 5)})
	if got := keysOf(take(t, sub)); !slices.Equal(got, []string{"put /a=a:2"}) {
		t.Fatalf("changes = %v, want the repaired key back", got)
	}
}

// A resync deletes a key that is gone even when the snapshot holds as many
// keys as the Feed, some of them malformed.
func TestFeedResetDeletesWhatIsGoneBesideMalformedKeys(t *testing.T) {
	f := NewFeed()
	defer f.Stop()
	f.Reset(1, []KV{{Key: "/a", Value: "a:1"}}, true)
	sub := f.Subscribe()
	defer sub.Close()
	take(t, sub)
	f.Reset(2, []KV{{Key: "/b", Value: "{bad"}, {Key: "/c", Value: "{bad"}}, false)
	if got := keysOf(take(t, sub)); !slices.Equal(got, []string{"delete /a=a:1"}) {
		t.Fatalf("changes = %v, want /a deleted", got)
	}
	if n := f.Len(); n != 0 {
		t.Fatalf("%d instances left, want none", n)
	}
}

// countLogger counts log lines; the Feed logs from the producer goroutine.
type countLogger struct{ n int }

func (l *countLogger) Log(...any) error { l.n++; return nil }

// TestSubscriptionKeepsTheLastChangeOfAKeyChangedTwiceInOneResponse: a
// watch response that catches up over many revisions can change one key
// twice, so a Feed batch may hold two changes of it. A Subscription hands
// its consumer one change per key, the last, whatever else it coalesces
// with: a consumer applying its batch in any order ends at etcd's state.
func TestSubscriptionKeepsTheLastChangeOfAKeyChangedTwiceInOneResponse(t *testing.T) {
	f := NewFeed()
	defer f.Stop()
	f.Reset(1, []KV{{Key: "/k", Value: "k:0", ModRev: 1}}, true)
	sub := f.Subscribe()
	defer sub.Close()
	take(t, sub)

	f.Apply(5, []Change{put("/m", "m:1", 2), put("/k", "k:1", 3), put("/k", "k:2", 4), put("/n", "n:1", 5)})
	f.Apply(6, []Change{del("/m", 6)}) // coalesced with the batch above
	b := take(t, sub)
	if got, want := keysOf(b), []string{"put /k=k:2", "put /n=n:1"}; !slices.Equal(got, want) {
		t.Fatalf("batch = %v, want %v", got, want)
	}
	for _, ch := range b.Changes {
		if ch.Key == "/k" && ch.Prev != "k:0" {
			t.Errorf("/k's Prev = %q, want k:0, what the consumer last saw", ch.Prev)
		}
	}

	// Alone, too: one change per key, the last.
	f.Apply(8, []Change{put("/k", "k:3", 7), del("/k", 8)})
	b = take(t, sub)
	if len(b.Changes) != 1 || b.Changes[0].Op != Delete || b.Changes[0].Prev != "k:2" {
		t.Fatalf("batch = %+v, want one delete of /k, Prev k:2", b.Changes)
	}
}
