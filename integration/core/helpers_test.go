package core

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/etcdsd/etcdsd/etcdv3"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger writes the library's logs to the test log, shown on failure.
func testLogger(t testing.TB) log.Logger {
	return log.LoggerFunc(func(kv ...any) error {
		var b strings.Builder
		for i := 0; i+1 < len(kv); i += 2 {
			fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
		}
		t.Log(b.String())
		return nil
	})
}

// newClient connects an etcdv3 client to endpoints and closes it at
// cleanup. Cleanups run last-registered first, so it closes before the
// server stops, and the server stops fast with no stream left open.
func newClient(t testing.TB, endpoints []string, opts ...func(*etcdv3.ClientOptions)) *etcdv3.EtcdClient {
	t.Helper()
	o := etcdv3.ClientOptions{DialTimeout: 2 * time.Second, RequestTimeout: 2 * time.Second, Logger: testLogger(t)}
	for _, f := range opts {
		f(&o)
	}
	c, err := etcdv3.NewEtcdClient(context.Background(), endpoints, o)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newInstancer starts an Instancer stopped at cleanup.
func newInstancer(t testing.TB, c etcdv3.Client, prefix string) *etcdv3.Instancer {
	t.Helper()
	in, err := etcdv3.NewInstancer(c, prefix, testLogger(t))
	if err != nil {
		t.Fatalf("new instancer %q: %v", prefix, err)
	}
	t.Cleanup(in.Stop)
	return in
}

// eventually polls cond every 10 ms until it holds or within passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recorder keeps the last event a subscriber received.
type recorder struct {
	ch   chan sd.Event
	quit chan struct{}
	done chan struct{}

	mu      sync.Mutex
	last    sd.Event
	changed chan struct{} // closed and replaced on every event
}

// subscribe registers a recorder with in and deregisters it at cleanup.
func subscribe(t testing.TB, in sd.Instancer) *recorder {
	r := &recorder{ch: make(chan sd.Event), quit: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			select {
			case ev := <-r.ch:
				r.mu.Lock()
				r.last = ev
				close(r.changed)
				r.changed = make(chan struct{})
				r.mu.Unlock()
			case <-r.quit:
				return
			}
		}
	}()
	in.Register(r.ch)
	t.Cleanup(func() {
		in.Deregister(r.ch)
		close(r.quit)
		<-r.done
	})
	return r
}

// waitFor waits until the recorder's last event satisfies cond.
func (r *recorder) waitFor(t testing.TB, within time.Duration, what string, cond func(sd.Event) bool) sd.Event {
	t.Helper()
	timeout := time.After(within)
	for {
		r.mu.Lock()
		ev, changed := r.last, r.changed
		r.mu.Unlock()
		if cond(ev) {
			return ev
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("not within %v: %s; last event %+v", within, what, ev)
		}
	}
}

// waitInstances waits until the last event is error-free with exactly want.
func (r *recorder) waitInstances(t testing.TB, within time.Duration, want ...string) {
	t.Helper()
	slices.Sort(want)
	r.waitFor(t, within, fmt.Sprintf("instances %v", want), func(ev sd.Event) bool {
		return ev.Err == nil && slices.Equal(ev.Instances, want)
	})
}

// values returns the sorted, distinct values under prefix, read directly.
func values(t testing.TB, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("get %q: %v", prefix, err)
	}
	out := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Value))
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// keyExists reports whether key is in etcd now.
func keyExists(t testing.TB, cli *clientv3.Client, key string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	return err == nil && len(resp.Kvs) == 1
}
