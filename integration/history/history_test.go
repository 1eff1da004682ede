package history

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// history is etcd's full history of one prefix, recorded by a raw clientv3
// watch straight to etcd from a snapshot: the state after every revision
// that changed the prefix, kept as a hash (the sum of a 64-bit hash of each
// key and value), and every event, to rebuild the state at a revision for a
// diff.
type history struct {
	prefix string
	cli    *clientv3.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	base     map[string]string // the content at revs[0]
	events   []event           // every event after revs[0], in order
	revs     []int64           // revs[i]: the revision of state i, ascending
	hashes   []uint64          // hashes[i]: the hash of state i
	byHash   map[uint64][]int  // hash → the states that have it, ascending
	cur      map[string]string // the content of the last state
	curHash  uint64
	progress int64 // every event up to this revision is recorded
	err      error // the watch failed: the history is incomplete
	changed  chan struct{}
}

type event struct {
	rev        int64
	key, value string
	del        bool
}

// kvHash is the hash of one key and its value (64-bit FNV-1a, its bits
// spread by splitmix64's finaliser so that sums do not cancel); a state's
// hash is their sum.
func kvHash(key, value string) uint64 {
	const prime = 1099511628211
	x := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		x = (x ^ uint64(key[i])) * prime
	}
	x *= prime // the separator, a zero byte
	for i := 0; i < len(value); i++ {
		x = (x ^ uint64(value[i])) * prime
	}
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// record starts recording prefix through cli, which must reach etcd
// without faults in between, and stops at cleanup.
func record(t testing.TB, cli *clientv3.Client, prefix string) *history {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		t.Fatalf("history: read %q: %v", prefix, err)
	}
	h := &history{
		prefix:  prefix,
		cli:     cli,
		done:    make(chan struct{}),
		base:    make(map[string]string),
		cur:     make(map[string]string),
		byHash:  make(map[uint64][]int),
		changed: make(chan struct{}),
	}
	for _, kv := range resp.Kvs {
		h.base[string(kv.Key)] = string(kv.Value)
		h.cur[string(kv.Key)] = string(kv.Value)
		h.curHash += kvHash(string(kv.Key), string(kv.Value))
	}
	rev := resp.Header.Revision
	h.revs, h.hashes, h.progress = []int64{rev}, []uint64{h.curHash}, rev
	h.byHash[h.curHash] = []int{0}
	wctx, wcancel := context.WithCancel(context.Background())
	h.cancel = wcancel
	wch := cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	go h.follow(wch)
	t.Cleanup(h.stop)
	return h
}

func (h *history) stop() {
	h.cancel()
	<-h.done
}

func (h *history) follow(wch clientv3.WatchChan) {
	defer close(h.done)
	for wr := range wch {
		if err := wr.Err(); err != nil {
			if wr.Canceled {
				h.fail(err)
				return
			}
			continue
		}
		h.apply(wr)
	}
}

func (h *history) fail(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err == nil {
		h.err = err
	}
	h.notifyLocked()
}

func (h *history) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *history) apply(wr clientv3.WatchResponse) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if wr.IsProgressNotify() {
		h.progress = max(h.progress, wr.Header.Revision)
		h.notifyLocked()
		return
	}
	for _, ev := range wr.Events {
		rev, key := ev.Kv.ModRevision, string(ev.Kv.Key)
		if rev <= h.revs[0] {
			continue
		}
		if old, ok := h.cur[key]; ok {
			h.curHash -= kvHash(key, old)
			delete(h.cur, key)
		}
		e := event{rev: rev, key: key}
		if ev.Type == mvccpb.DELETE {
			e.del = true
		} else {
			e.value = string(ev.Kv.Value)
			h.cur[key] = e.value
			h.curHash += kvHash(key, e.value)
		}
		h.events = append(h.events, e)
		last := len(h.revs) - 1
		if h.revs[last] == rev {
			h.hashes[last] = h.curHash
		} else {
			h.indexLocked(last)
			h.revs = append(h.revs, rev)
			h.hashes = append(h.hashes, h.curHash)
		}
		h.progress = max(h.progress, rev)
	}
	// Every event of a revision comes in one response.
	h.indexLocked(len(h.revs) - 1)
	h.notifyLocked()
}

// indexLocked files state i under its hash, once.
func (h *history) indexLocked(i int) {
	is := h.byHash[h.hashes[i]]
	if len(is) == 0 || is[len(is)-1] != i {
		h.byHash[h.hashes[i]] = append(is, i)
	}
}

// syncTo waits until every event up to rev is recorded, asking etcd for
// progress notifications meanwhile.
func (h *history) syncTo(rev int64, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		h.mu.Lock()
		progress, err, changed := h.progress, h.err, h.changed
		h.mu.Unlock()
		if err != nil {
			return fmt.Errorf("history of %q: watch failed: %w", h.prefix, err)
		}
		if progress >= rev {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("history of %q: recorded up to revision %d, not %d, within %v", h.prefix, progress, rev, within)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_ = h.cli.RequestProgress(ctx)
		cancel()
		select {
		case <-changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// current returns etcd's current revision.
func (h *history) current(within time.Duration) (int64, error) {
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := h.cli.Get(ctx, h.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err == nil {
			return resp.Header.Revision, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("history of %q: read the current revision: %w", h.prefix, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncNow waits until the history holds etcd's current state.
func (h *history) syncNow(within time.Duration) error {
	rev, err := h.current(within)
	if err != nil {
		return err
	}
	return h.syncTo(rev, within)
}

// at returns the state that holds at revision rev (recorded already).
func (h *history) at(rev int64) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return sort.Search(len(h.revs), func(i int) bool { return h.revs[i] > rev }) - 1
}

// match returns the first state at or after state from whose hash is hash.
func (h *history) match(hash uint64, from int) (int, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	is := h.byHash[hash]
	j := sort.SearchInts(is, from)
	if j == len(is) {
		return 0, false
	}
	return is[j], true
}

// hashOf returns the hash of state i.
func (h *history) hashOf(i int) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hashes[i]
}

// last returns the index of the last state recorded.
func (h *history) last() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.revs) - 1
}

// rev returns the first revision of state i, and the last one (before the
// next state, or the recorded progress).
func (h *history) rev(i int) (int64, int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if i < 0 {
		return 0, 0
	}
	if i+1 < len(h.revs) {
		return h.revs[i], h.revs[i+1] - 1
	}
	return h.revs[i], h.progress
}

// eventCount returns how many events were recorded.
func (h *history) eventCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.events)
}

// deletes returns how many deletes of keys starting with keyPrefix were
// recorded.
func (h *history) deletes(keyPrefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, e := range h.events {
		if e.del && strings.HasPrefix(e.key, keyPrefix) {
			n++
		}
	}
	return n
}

// content rebuilds state i.
func (h *history) content(i int) map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]string, len(h.base))
	for k, v := range h.base {
		out[k] = v
	}
	rev := h.revs[i]
	for _, e := range h.events {
		if e.rev > rev {
			break
		}
		if e.del {
			delete(out, e.key)
		} else {
			out[e.key] = e.value
		}
	}
	return out
}

// diff describes how got differs from want, etcd's state i, in a few
// lines, and what etcd itself says of the first keys that differ: the
// history's events of each and a read at the state's revision.
func (h *history) diff(got map[string]string, i int) string {
	want := h.content(i)
	rev, _ := h.rev(i)
	var missing, extra, changed, keys []string
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing = append(missing, k)
		case g != v:
			changed = append(changed, fmt.Sprintf("%s=%s (want %s)", k, g, v))
		default:
			continue
		}
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			extra = append(extra, k+"="+got[k])
			keys = append(keys, k)
		}
	}
	part := func(what string, s []string) string {
		slices.Sort(s)
		n, more := len(s), ""
		if n > 5 {
			s, more = s[:5], ", …"
		}
		return fmt.Sprintf("%s %d [%s%s]", what, n, strings.Join(s, ", "), more)
	}
	slices.Sort(keys)
	var told []string
	for _, k := range keys[:min(len(keys), 3)] {
		told = append(told, h.tell(k, rev))
	}
	out := fmt.Sprintf("%d keys, want %d: %s; %s; %s", len(got), len(want),
		part("missing", missing), part("extra", extra), part("changed", changed))
	for _, t := range told {
		out += "; " + t
	}
	return out
}

// tell gives the history's last events of key and etcd's own answer for
// key at revision rev.
func (h *history) tell(key string, rev int64) string {
	h.mu.Lock()
	var evs []string
	for _, e := range h.events {
		if e.key != key {
			continue
		}
		if e.del {
			evs = append(evs, fmt.Sprintf("delete@%d", e.rev))
		} else {
			evs = append(evs, fmt.Sprintf("put %s@%d", e.value, e.rev))
		}
	}
	if _, ok := h.base[key]; ok {
		evs = append([]string{"in the first snapshot"}, evs...)
	}
	h.mu.Unlock()
	if len(evs) > 4 {
		evs = evs[len(evs)-4:]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	answer := "absent"
	resp, err := h.cli.Get(ctx, key, clientv3.WithRev(rev))
	switch {
	case err != nil:
		answer = err.Error()
	case len(resp.Kvs) == 1:
		answer = fmt.Sprintf("%s (mod revision %d)", resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	}
	return fmt.Sprintf("%s: history [%s], etcd at %d: %s", key, strings.Join(evs, " "), rev, answer)
}
