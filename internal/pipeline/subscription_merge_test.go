package pipeline

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/etcdsd/etcdsd/instance"
)

// Randomized and exhaustive checks of the Subscription's merge against a
// consumer that applies batches by Prev, as the endpointer does.

// seenKV is what a consumer holds for one key.
type seenKV struct {
	value string
	inst  instance.Instance
}

// prevConsumer applies batches the way etcdsd's consumers do: by key, and
// checking that each change's Prev is what it holds.
type prevConsumer struct {
	name  string
	state map[string]seenKV
	// perKey: a Subscription's batch holds at most one change per key.
	perKey bool
}

func (c *prevConsumer) apply(t *testing.T, step int, b Batch) {
	t.Helper()
	if b.Reset {
		clear(c.state)
	}
	seen := map[string]bool{}
	for _, ch := range b.Changes {
		if c.perKey && seen[ch.Key] {
			t.Fatalf("step %d %s: two changes of %s in one batch: %+v", step, c.name, ch.Key, b.Changes)
		}
		seen[ch.Key] = true
		had, ok := c.state[ch.Key]
		if ch.Prev != had.value {
			t.Fatalf("step %d %s: %s %s: Prev %q, consumer has %q (present %v); batch %+v", step, c.name, ch.Op, ch.Key, ch.Prev, had.value, ok, b)
		}
		switch ch.Op {
		case Put:
			if b.Reset && ch.Prev != "" {
				t.Fatalf("step %d %s: put in a reset with Prev %q", step, c.name, ch.Prev)
			}
			c.state[ch.Key] = seenKV{ch.Value, ch.Instance}
		case Delete:
			if b.Reset {
				t.Fatalf("step %d %s: delete in a reset", step, c.name)
			}
			if !ok {
				t.Fatalf("step %d %s: delete of %s, which the consumer does not have", step, c.name, ch.Key)
			}
			delete(c.state, ch.Key)
		}
	}
}

func (c *prevConsumer) check(t *testing.T, step int, f *Feed) {
	t.Helper()
	want := map[string]seenKV{}
	for _, ch := range f.Contents() {
		want[ch.Key] = seenKV{ch.Value, ch.Instance}
	}
	if len(want) != len(c.state) {
		t.Fatalf("step %d %s: consumer has %d keys, feed %d:\n got %v\nwant %v", step, c.name, len(c.state), len(want), c.state, want)
	}
	for k, w := range want {
		g, ok := c.state[k]
		if !ok || g.value != w.value || !g.inst.Equal(w.inst) {
			t.Fatalf("step %d %s: key %s: consumer %+v (present %v), feed %+v", step, c.name, k, g, ok, w)
		}
	}
}

// testFilter hides keys and overrides weights, as the property overlay does.
type testFilter struct {
	mu     sync.Mutex
	hidden map[string]bool
	weight map[string]int
}

func (tf *testFilter) filter(key string, reg instance.Instance) (instance.Instance, bool) {
	tf.mu.Lock()
	defer tf.mu.Unlock()
	if tf.hidden[key] {
		return reg, false
	}
	if w, ok := tf.weight[key]; ok {
		reg.Weight = w
	}
	return reg, true
}

func randValue(r *rand.Rand) string {
	switch n := r.IntN(10); {
	case n == 0:
		return "not a valid value" // malformed: the key leaves
	case n < 5:
		return fmt.Sprintf("10.0.0.%d:80", r.IntN(4)) // shared between keys
	default:
		return fmt.Sprintf(`{"address":"10.0.1.%d:80","weight":%d}`, r.IntN(3), r.IntN(3))
	}
}

// TestSubscriptionMergeKeepsConsumersEqualToTheFeedRandomly drives a filtered Feed with random
// watch responses (several changes of one key each), resyncs, failures and
// refilters, and takes from Subscriptions at random moments: every change a
// consumer gets must carry what it holds as Prev, and it must end at the
// Feed's content. An observer, applying every batch in order, too.
func TestSubscriptionMergeKeepsConsumersEqualToTheFeedRandomly(t *testing.T) {
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 3))
		tf := &testFilter{hidden: map[string]bool{}, weight: map[string]int{}}
		obs := &prevConsumer{name: "observer", state: map[string]seenKV{}}
		step := 0
		f := NewFeed(WithFilter(tf.filter), WithObserver(func(b Batch) { obs.apply(t, step, b) }))
		keys := []string{"/a", "/b", "/c", "/d", "/e"}
		rev := int64(1)
		f.Reset(rev, nil, true)
		type subc struct {
			sub *Subscription
			c   *prevConsumer
		}
		var subs []subc
		newSub := func() {
			subs = append(subs, subc{f.Subscribe(), &prevConsumer{name: fmt.Sprintf("seed %d sub %d", seed, len(subs)), state: map[string]seenKV{}, perKey: true}})
		}
		newSub()
		for step = range 200 {
			switch n := r.IntN(20); {
			case n < 12: // one watch response
				var raw []Change
				for range 1 + r.IntN(6) {
					rev++
					k := keys[r.IntN(len(keys))]
					if r.IntN(3) == 0 {
						raw = append(raw, del(k, rev))
					} else {
						raw = append(raw, put(k, randValue(r), rev))
					}
				}
				f.Apply(rev, raw)
			case n < 14: // a resync: a fresh snapshot
				rev++
				var kvs []KV
				for _, k := range keys {
					if r.IntN(2) == 0 {
						kvs = append(kvs, KV{Key: k, Value: randValue(r), ModRev: rev})
					}
				}
				f.Reset(rev, kvs, false)
			case n < 15:
				f.Fail(errors.New("etcd unreachable"))
			case n < 18: // the properties changed
				tf.mu.Lock()
				k := keys[r.IntN(len(keys))]
				switch r.IntN(3) {
				case 0:
					tf.hidden[k] = !tf.hidden[k]
				case 1:
					tf.weight[k] = r.IntN(4)
				case 2:
					delete(tf.weight, k)
				}
				tf.mu.Unlock()
				f.Refilter()
			case n < 19:
				if len(subs) < 4 {
					newSub()
				}
			}
			for _, s := range subs {
				if r.IntN(3) == 0 {
					s.c.apply(t, step, s.sub.Take())
				}
			}
		}
		for _, s := range subs {
			s.c.apply(t, step, s.sub.Take())
			s.c.check(t, step, f)
			s.sub.Close()
		}
		obs.check(t, step, f)
		f.Stop()
	}
}

// TestSubscriptionMergeKeepsConcurrentConsumersEqualToTheFeed: the same with a consumer
// goroutine per Subscription taking when Ready fires, and Refilter called
// from another goroutine than Apply's (as the property overlay does).
func TestSubscriptionMergeKeepsConcurrentConsumersEqualToTheFeed(t *testing.T) {
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 7))
		tf := &testFilter{hidden: map[string]bool{}, weight: map[string]int{}}
		f := NewFeed(WithFilter(tf.filter))
		keys := []string{"/a", "/b", "/c", "/d"}
		f.Reset(1, nil, true)
		var wg sync.WaitGroup
		quit := make(chan struct{})
		var consumers []*prevConsumer
		var subs []*Subscription
		for i := range 3 {
			sub := f.Subscribe()
			c := &prevConsumer{name: fmt.Sprintf("seed %d sub %d", seed, i), state: map[string]seenKV{}, perKey: true}
			subs, consumers = append(subs, sub), append(consumers, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-sub.Ready():
						c.apply(t, -1, sub.Take())
					case <-quit:
						return
					}
				}
			}()
		}
		refDone := make(chan struct{})
		go func() {
			defer close(refDone)
			rr := rand.New(rand.NewPCG(seed, 8))
			for range 100 {
				tf.mu.Lock()
				k := keys[rr.IntN(len(keys))]
				if rr.IntN(2) == 0 {
					tf.hidden[k] = !tf.hidden[k]
				} else {
					tf.weight[k] = rr.IntN(4)
				}
				tf.mu.Unlock()
				f.Refilter()
			}
		}()
		rev := int64(1)
		for range 300 {
			var raw []Change
			for range 1 + r.IntN(6) {
				rev++
				k := keys[r.IntN(len(keys))]
				if r.IntN(3) == 0 {
					raw = append(raw, del(k, rev))
				} else {
					raw = append(raw, put(k, randValue(r), rev))
				}
			}
			f.Apply(rev, raw)
		}
		<-refDone
		close(quit)
		wg.Wait()
		for i, sub := range subs {
			consumers[i].apply(t, -1, sub.Take())
			consumers[i].check(t, -1, f)
			sub.Close()
		}
		f.Stop()
	}
}

// TestSubscriptionMergeOfEverySequenceOfThreeChanges: every sequence of up to maxSequence
// operations on one key (puts of two values, a malformed put, a delete,
// hide, show, a weight override), each a batch of its own or sharing one
// with the next, with a Take after any of them, starting from the key
// absent, present, or hidden, with the subscription's reset taken or not.
func TestSubscriptionMergeOfEverySequenceOfThreeChanges(t *testing.T) {
	const nOps = 7
	const k = "/k"
	var runs int
	var seq []int
	var rec func()
	run := func(start int, takeInitial bool, glue, takes uint) {
		runs++
		tf := &testFilter{hidden: map[string]bool{}, weight: map[string]int{}}
		f := NewFeed(WithFilter(tf.filter))
		defer f.Stop()
		rev := int64(1)
		switch start {
		case 0:
			f.Reset(rev, nil, true)
		case 1:
			f.Reset(rev, []KV{{Key: k, Value: "10.0.0.1:80", ModRev: 1}}, true)
		case 2:
			tf.hidden[k] = true
			f.Reset(rev, []KV{{Key: k, Value: "10.0.0.1:80", ModRev: 1}}, true)
		}
		sub := f.Subscribe()
		defer sub.Close()
		c := &prevConsumer{name: fmt.Sprint("start ", start, " seq ", seq, " glue ", glue, " takes ", takes), state: map[string]seenKV{}, perKey: true}
		if takeInitial {
			c.apply(t, -1, sub.Take())
		}
		var raw []Change
		flush := func() {
			if len(raw) > 0 {
				f.Apply(rev, raw)
				raw = nil
			}
		}
		for i, op := range seq {
			switch op {
			case 0, 1, 2, 3:
				rev++
				switch op {
				case 0:
					raw = append(raw, put(k, "10.0.0.1:80", rev))
				case 1:
					raw = append(raw, put(k, `{"address":"10.0.0.2:80","weight":2}`, rev))
				case 2:
					raw = append(raw, put(k, "malformed value", rev))
				case 3:
					raw = append(raw, del(k, rev))
				}
			default:
				flush()
				tf.mu.Lock()
				switch op {
				case 4:
					tf.hidden[k] = true
				case 5:
					tf.hidden[k] = false
				case 6:
					tf.weight[k]++
				}
				tf.mu.Unlock()
				f.Refilter()
			}
			// another key, so that batches coalesce with more than /k
			rev++
			raw = append(raw, put("/other", fmt.Sprintf("10.0.9.%d:80", rev%7), rev))
			if glue&(1<<i) == 0 {
				flush()
			}
			if takes&(1<<i) != 0 {
				c.apply(t, i, sub.Take())
			}
		}
		flush()
		c.apply(t, len(seq), sub.Take())
		c.check(t, len(seq), f)
	}
	rec = func() {
		if len(seq) > 0 {
			for start := range 3 {
				for _, ti := range []bool{false, true} {
					for glue := range uint(1 << len(seq)) {
						for takes := range uint(1 << len(seq)) {
							run(start, ti, glue, takes)
						}
					}
				}
			}
		}
		if len(seq) == maxSequence {
			return
		}
		for op := range nOps {
			seq = append(seq, op)
			rec()
			seq = seq[:len(seq)-1]
		}
	}
	rec()
	t.Logf("%d runs", runs)
}

// maxSequence: 3 by default; ETCDSD_MERGE_MAXSEQ=4 runs 3.8 million cases
// (about 90 s).
var maxSequence = func() int {
	if n, err := strconv.Atoi(os.Getenv("ETCDSD_MERGE_MAXSEQ")); err == nil {
		return n
	}
	return 3
}()
