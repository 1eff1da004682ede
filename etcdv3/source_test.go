package etcdv3

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// TestWatchCatchesUpMoreThanABatchOfRevisions watches from a revision far
// behind the store. etcd sends the missed events in responses of at most
// 1,000 revisions, each stamped with the store's current revision; the
// Feed must take what it has applied from the events, or it skips every
// later response as already seen.
func TestWatchCatchesUpMoreThanABatchOfRevisions(t *testing.T) {
	const prefix, keys = "/catchup/", 2600 // three catch-up responses at least
	cli := etcdtest.NewServer(t).Client(t)
	c := FromClient(cli, ClientOptions{})
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	start, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[string]string, keys)
	for i := range keys {
		k, v := fmt.Sprintf("%s%05d", prefix, i), fmt.Sprintf("10.0.%d.%d:80", i/250, i%250)
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}

	// The catch-up takes milliseconds; a Feed that skipped events waits
	// for more that never come.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	feed := pipeline.NewFeed()
	feed.Reset(start.Header.Revision, nil, true)
	src := &etcdSource{c: c, prefix: prefix, timeout: time.Second}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	responses := 0
	go func() {
		done <- src.Watch(wctx, start.Header.Revision+1, func(rev int64, changes []pipeline.Change) {
			responses++
			feed.Apply(rev, changes)
			if feed.Len() == keys {
				stop()
			}
		})
	}()
	select {
	case <-done:
	case <-ctx.Done():
		stop()
		<-done
	}
	got := feed.Contents()
	if len(got) != keys {
		t.Fatalf("Feed holds %d of %d keys after %d watch responses (revision %d)", len(got), keys, responses, feed.Revision())
	}
	for _, ch := range got {
		if want[ch.Key] != ch.Value {
			t.Fatalf("key %s: got %q, want %q", ch.Key, ch.Value, want[ch.Key])
		}
	}
	if responses < 3 {
		t.Fatalf("caught up in %d responses; the test wants etcd's batches of at most 1,000 revisions", responses)
	}
}
