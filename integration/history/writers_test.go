package history

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// maxTxnOps is etcd's default limit of operations in one transaction
// (--max-txn-ops).
const maxTxnOps = 128

// seq numbers the values written, so that no two writes put the same value.
var seq atomic.Int64

// value returns a new value of the key prefix+id: a plain address whose
// host names the key and a number no other write uses.
func value(id string) string { return fmt.Sprintf("%s.%d:9000", id, seq.Add(1)) }

// writers churn keys under the prefix straight to etcd: puts of new keys,
// updates, deletes, and transactions of up to maxTxnOps operations, each
// writer on keys of its own.
type writers struct {
	cli      *clientv3.Client
	maxKeys  int // keys a writer keeps at most
	quit     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
	writes   atomic.Int64 // successful requests
}

func startWriters(t testing.TB, cli *clientv3.Client, rng *rand.Rand, n, maxKeys int) *writers {
	w := &writers{cli: cli, maxKeys: maxKeys, quit: make(chan struct{})}
	for i := range n {
		r := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
		w.wg.Add(1)
		go w.write(i, r)
	}
	t.Cleanup(w.stop)
	return w
}

// stop stops the writers and waits for them; it is idempotent.
func (w *writers) stop() {
	w.stopOnce.Do(func() {
		close(w.quit)
		w.wg.Wait()
	})
}

func (w *writers) write(i int, rng *rand.Rand) {
	defer w.wg.Done()
	var keys []string // the ids of this writer's keys, as far as it knows
	next := 0
	fresh := func() string {
		next++
		return fmt.Sprintf("w%d-%d", i, next)
	}
	pick := func() (string, int) {
		j := rng.IntN(len(keys))
		return keys[j], j
	}
	drop := func(j int) {
		keys[j] = keys[len(keys)-1]
		keys = keys[:len(keys)-1]
	}
	for {
		select {
		case <-w.quit:
			return
		default:
		}
		n := 1
		if rng.IntN(100) < 15 {
			n = 2 + rng.IntN(maxTxnOps-1)
		}
		var ops []clientv3.Op
		used := make(map[string]bool, n)
		for range n {
			r := rng.IntN(100)
			switch {
			case len(keys) == 0 || r < 40 && len(keys) < w.maxKeys:
				id := fresh()
				ops = append(ops, clientv3.OpPut(prefix+id, value(id)))
				keys = append(keys, id)
				used[id] = true
			case r < 75 || len(keys) < 2:
				id, _ := pick()
				if !used[id] {
					used[id] = true
					ops = append(ops, clientv3.OpPut(prefix+id, value(id)))
				}
			default:
				id, j := pick()
				if !used[id] {
					used[id] = true
					ops = append(ops, clientv3.OpDelete(prefix+id))
					drop(j)
				}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var err error
		if len(ops) == 1 {
			_, err = w.cli.Do(ctx, ops[0])
		} else {
			_, err = w.cli.Txn(ctx).Then(ops...).Commit()
		}
		cancel()
		if err != nil {
			// etcd may be down for the scenario; what was applied is in
			// the history either way.
			select {
			case <-w.quit:
				return
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		w.writes.Add(1)
	}
}

// bulkKeys writes n keys in transactions of maxTxnOps puts.
func bulkKeys(t testing.TB, cli *clientv3.Client, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < n; i += maxTxnOps {
		var ops []clientv3.Op
		for j := i; j < min(i+maxTxnOps, n); j++ {
			id := fmt.Sprintf("b-%d", j)
			ops = append(ops, clientv3.OpPut(prefix+id, value(id)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatalf("bulk write: %v", err)
		}
	}
}

// bulkDelete deletes the keys of bulkKeys with one prefix delete: one
// revision, n events.
func bulkDelete(t testing.TB, cli *clientv3.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Under -race on a busy machine the delete may outlast etcd's own
	// request timeout and still be applied: wait until the keys are gone.
	if _, err := cli.Delete(ctx, prefix+"b-", clientv3.WithPrefix()); err != nil {
		t.Logf("bulk delete: %v; waiting for it to be applied", err)
	}
	for {
		resp, err := cli.Get(ctx, prefix+"b-", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && resp.Count == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("bulk delete: keys left (err %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
