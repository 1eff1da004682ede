package faults

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
)

// fleet is what the invariant checker holds to account: the registrars that
// should be alive under one prefix, and the instancers of that prefix with
// a subscriber each. Only the fleet writes under its prefix.
type fleet struct {
	t      testing.TB
	prefix string
	truth  *clientv3.Client // reads etcd, not through any fault proxy
	logs   *logTail

	mu       sync.Mutex
	live     map[string]*liveReg // key → the registrar that owns it
	watchers []*watcher
	seq      int
}

type liveReg struct {
	reg    *etcdv3.Registrar
	client *etcdv3.EtcdClient
	value  string
}

type watcher struct {
	name string
	in   *etcdv3.Instancer
	rec  *itest.Recorder
}

func newFleet(t testing.TB, prefix string, truth *clientv3.Client, logs *logTail) *fleet {
	f := &fleet{t: t, prefix: prefix, truth: truth, logs: logs, live: map[string]*liveReg{}}
	// The registrars go when the test ends, before their clients close
	// (cleanups run last first, and the clients were made before the
	// fleet), so that no key is left behind.
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, lr := range f.live {
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			lr.reg.DeregisterContext(ctx)
			cancel()
		}
	})
	return f
}

// watch starts an Instancer of the prefix on c with a subscriber.
func (f *fleet) watch(name string, c etcdv3.Client) *watcher {
	f.t.Helper()
	in, err := etcdv3.NewInstancerContext(context.Background(), c, f.prefix, f.logs)
	if err != nil {
		f.t.Fatalf("watcher %s: %v", name, err)
	}
	f.t.Cleanup(in.Stop)
	w := &watcher{name: name, in: in, rec: itest.Subscribe(f.t, in)}
	f.mu.Lock()
	f.watchers = append(f.watchers, w)
	f.mu.Unlock()
	return w
}

// nextValue returns a value no registrar of the fleet has had before.
func (f *fleet) nextValue() string {
	f.seq++
	return fmt.Sprintf("10.%d.%d.%d:8080", f.seq>>16&255, f.seq>>8&255, f.seq&255)
}

// register starts a registrar of key on c. As with go-kit, Register tries
// once and, if etcd cannot be reached, keeps trying in the background.
func (f *fleet) register(c *etcdv3.EtcdClient, id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := f.prefix + id
	v := f.nextValue()
	r := etcdv3.NewRegistrar(c, etcdv3.Service{Key: key, Value: v, TTL: shortTTL()}, f.logs)
	r.Register()
	f.live[key] = &liveReg{reg: r, client: c, value: v}
	return key
}

// deregister removes key; during an outage the delete may fail, and the
// key must then leave etcd with its lease.
func (f *fleet) deregister(key string) {
	f.mu.Lock()
	lr := f.live[key]
	delete(f.live, key)
	f.mu.Unlock()
	if lr == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	lr.reg.DeregisterContext(ctx)
}

// change gives key a new value through a new registrar on the same client,
// which takes over the key's registration. It does nothing while the
// current registrar has not registered yet (its retry would race with the
// new one, as it would in any program doing that).
func (f *fleet) change(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	lr := f.live[key]
	if lr == nil || lr.reg.State() != etcdv3.StateRegistered {
		return false
	}
	v := f.nextValue()
	r := etcdv3.NewRegistrar(lr.client, etcdv3.Service{Key: key, Value: v, TTL: shortTTL()}, f.logs)
	r.Register()
	f.live[key] = &liveReg{reg: r, client: lr.client, value: v}
	return true
}

// keys returns the live keys, sorted.
func (f *fleet) keys() []string { return f.keysWith(f.prefix) }

// keysWith returns the live keys that start with prefix, sorted.
func (f *fleet) keysWith(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	keys := make([]string, 0, len(f.live))
	for k := range f.live {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// check waits until every invariant holds and returns how long that took,
// or the violations still seen when within passes.
func (f *fleet) check(within time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(within)
	for {
		err := f.violations()
		if err == nil {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return time.Since(start), fmt.Errorf("invariants still violated %v after the fault healed:\n%w", within, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// mustCheck is check that fails the test, and logs the convergence time.
func (f *fleet) mustCheck(what string) time.Duration {
	f.t.Helper()
	d, err := f.check(converge)
	if err != nil {
		f.t.Fatalf("%s: %v", what, err)
	}
	f.t.Logf("%s: invariants hold after %v", what, d.Round(time.Millisecond))
	return d
}

// violations compares the fleet with a fresh read of etcd:
//  1. every watcher's subscriber last received, and every Instancer
//     holds, the values now in etcd, error-free, sorted and distinct;
//  2. every live registrar is registered without error, and its key is in
//     etcd with its value, on a lease that is alive;
//  3. no key is under the prefix that no live registrar owns, and no value
//     is there twice.
//
// Goroutine leaks and data races are checked by TestMain and -race.
func (f *fleet) violations() error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	resp, err := f.truth.Get(ctx, f.prefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("read etcd: %w", err)
	}
	f.mu.Lock()
	live := make(map[string]*liveReg, len(f.live))
	for k, lr := range f.live {
		live[k] = lr
	}
	watchers := slices.Clone(f.watchers)
	f.mu.Unlock()

	var errs []error
	add := func(format string, args ...any) {
		if len(errs) < 10 {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	values := make([]string, 0, len(resp.Kvs))
	inEtcd := make(map[string]bool, len(resp.Kvs))
	leases := map[clientv3.LeaseID]bool{}
	for _, kv := range resp.Kvs {
		key, value := string(kv.Key), string(kv.Value)
		inEtcd[key] = true
		values = append(values, value)
		lr := live[key]
		switch {
		case lr == nil:
			add("key %s = %q is in etcd but no live registrar owns it", key, value)
		case lr.value != value:
			add("key %s = %q in etcd, want %q", key, value, lr.value)
		case kv.Lease == 0:
			add("key %s is in etcd without a lease", key)
		default:
			leases[clientv3.LeaseID(kv.Lease)] = true
		}
	}
	for id := range leases {
		ttl, err := f.truth.TimeToLive(ctx, id)
		if err != nil {
			return fmt.Errorf("read lease %x: %w", int64(id), err)
		}
		if ttl.TTL <= 0 {
			add("lease %x of live keys has expired (TTL %d)", int64(id), ttl.TTL)
		}
	}
	for key, lr := range live {
		if !inEtcd[key] {
			add("registrar of %s (%s) is live but its key is not in etcd", key, lr.value)
		}
		if st := lr.reg.Status(); st.State != etcdv3.StateRegistered || st.Err != nil {
			add("registrar of %s: status %v, err %v; want registered without error", key, st.State, st.Err)
		}
	}
	slices.Sort(values)
	if d := duplicates(values); len(d) > 0 {
		add("values duplicated in etcd: %v", d)
	}
	want := slices.Compact(values)
	for _, w := range watchers {
		ev, _ := w.rec.Last()
		if d := duplicates(ev.Instances); len(d) > 0 {
			add("watcher %s: duplicated instances %v", w.name, d)
		}
		if ev.Err != nil || !slices.Equal(ev.Instances, want) {
			add("watcher %s: subscriber last got %d instances (err %v), etcd has %d%s", w.name, len(ev.Instances), ev.Err, len(want), diff(ev.Instances, want))
		}
		if st := w.in.State(); st.Err != nil || !slices.Equal(st.Instances, want) {
			add("watcher %s: Instancer holds %d instances (err %v), etcd has %d%s", w.name, len(st.Instances), st.Err, len(want), diff(st.Instances, want))
		}
	}
	return errors.Join(errs...)
}

// duplicates returns the values that appear more than once in sorted.
func duplicates(sorted []string) []string {
	var d []string
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] && (len(d) == 0 || d[len(d)-1] != sorted[i]) {
			d = append(d, sorted[i])
		}
	}
	return d
}

// diff describes, briefly, what got lacks and has too many of.
func diff(got, want []string) string {
	var missing, extra []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	var b strings.Builder
	if len(missing) > 0 {
		fmt.Fprintf(&b, "; missing %v", head(missing))
	}
	if len(extra) > 0 {
		fmt.Fprintf(&b, "; extra %v", head(extra))
	}
	return b.String()
}

func head(s []string) []string {
	if len(s) > 5 {
		return append(s[:5:5], fmt.Sprintf("… %d more", len(s)-5))
	}
	return s
}
