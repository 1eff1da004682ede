package history

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// TestInstancerStartedMidDeployWaveOverSlowLinkEndsWithEveryInstance is the
// deploy wave of issue 17: 8 writers put 12,000 new keys while a client
// whose link to etcd has 500 ms of latency (its connection already up)
// starts an Instancer. Its watch starts thousands of revisions behind, and
// etcd sends the missed events in responses of at most 1,000 revisions
// stamped with its current revision; 15 s after the writes end the
// subscriber must hold every instance.
func TestInstancerStartedMidDeployWaveOverSlowLinkEndsWithEveryInstance(t *testing.T) {
	const (
		writers = 8
		keys    = 12000
		latency = 500 * time.Millisecond
	)
	srv := etcdtest.NewServer(t)
	direct := srv.Client(t)
	proxy := etcdtest.NewProxy(t, srv.Endpoints()[0])
	// The fault proxy delays each 48 KiB it relays by the latency, so a
	// snapshot of thousands of keys takes seconds to read: the request
	// timeout leaves room for that.
	c := itestclient.New(t, []string{proxy.Endpoint()}, func(o *etcdv3.ClientOptions) { o.RequestTimeout = 20 * time.Second })
	if _, err := c.GetEntries(prefix); err != nil { // the connection is up
		t.Fatal(err)
	}
	proxy.SetLatency(latency / 2) // each way: a round trip takes 500 ms longer

	var written atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := i; j < keys; j += writers {
				id := fmt.Sprintf("deploy-%d", j)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := direct.Put(ctx, prefix+id, value(id))
				cancel()
				if err != nil {
					errs <- fmt.Errorf("put %s: %w", id, err)
					return
				}
				written.Add(1)
			}
		}()
	}
	itest.Eventually(t, 30*time.Second, "a quarter of the keys written", func() bool { return written.Load() >= keys/4 })
	started := written.Load()
	in, err := etcdv3.NewInstancer(c, prefix, itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	rec := itest.Subscribe(t, in)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	resp, err := direct.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != keys {
		t.Fatalf("etcd holds %d keys, want %d", resp.Count, keys)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ev, changed := rec.Last()
		if ev.Err == nil && len(ev.Instances) == keys {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("15 s after the writes ended the subscriber holds %d of the %d instances (Instancer started after %d writes; err %v)",
				len(ev.Instances), keys, started, ev.Err)
		}
		select {
		case <-changed:
		case <-time.After(time.Until(deadline)):
		}
	}
}
