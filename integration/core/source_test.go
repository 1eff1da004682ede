package core

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
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
	c := etcdv3.FromClient(cli, etcdv3.ClientOptions{RequestTimeout: time.Second})
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
	src := pipeline.SourceFor(c, prefix)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	responses := 0
	go func() {
		done <- src.Watch(wctx, start.Header.Revision+1, func(r pipeline.WatchResponse) {
			if len(r.Changes) == 0 {
				return // the proof that the watch caught up
			}
			responses++
			feed.Apply(r.Rev, r.Changes)
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

// putKeys writes n keys prefix+%05d, from first on, 128 to a transaction
// (etcd's default limit): one revision per transaction.
func putKeys(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string, first, n int) {
	t.Helper()
	for i := first; i < first+n; {
		var ops []clientv3.Op
		for ; i < first+n && len(ops) < 128; i++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("%s%05d", prefix, i), fmt.Sprintf("10.%d.%d.%d:80", i/62500, i/250%250, i%250)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
}

// etcdContent reads prefix from etcd: its keys and values, and the revision.
func etcdContent(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string) (map[string]string, int64) {
	t.Helper()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out, resp.Header.Revision
}

// differs says how the Feed's content differs from want, "" when it does not.
func differs(feed *pipeline.Feed, want map[string]string) string {
	got := feed.Contents()
	if len(got) != len(want) {
		return fmt.Sprintf("%d keys, want %d", len(got), len(want))
	}
	for _, ch := range got {
		if want[ch.Key] != ch.Value {
			return fmt.Sprintf("key %s is %q, want %q", ch.Key, ch.Value, want[ch.Key])
		}
	}
	return ""
}

// laggingSource reads its first snapshot at an old revision, so that the
// watch after it starts that far behind the store, as after a snapshot of
// a large prefix read under churn. Its Watch, and every later Snapshot, is
// the etcd-backed source the client's Instancers use (pipeline.SourceFor,
// set by etcdv3).
type laggingSource struct {
	pipeline.Source
	cli    *clientv3.Client // the client's own connection
	prefix string
	at     int64
	first  bool
}

func (s *laggingSource) Snapshot(ctx context.Context) (int64, []pipeline.KV, error) {
	if s.first {
		return s.Source.Snapshot(ctx)
	}
	s.first = true
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(s.at))
	if err != nil {
		return 0, nil, err
	}
	kvs := make([]pipeline.KV, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		kvs[i] = pipeline.KV{Key: string(kv.Key), Value: string(kv.Value), ModRev: kv.ModRevision}
	}
	return s.at, kvs, nil
}

// behind returns a source of prefix through a client on conn whose first
// snapshot is at the store's current revision, read through cli: the
// writes a test makes next put its watch that far behind. The client is
// closed with the test.
func behind(t *testing.T, conn *clientv3.Client, opts etcdv3.ClientOptions, cli *clientv3.Client, prefix string) *laggingSource {
	t.Helper()
	c := etcdv3.FromClient(conn, opts)
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, start := etcdContent(t, ctx, cli, prefix)
	return &laggingSource{Source: pipeline.SourceFor(c, prefix), cli: conn, prefix: prefix, at: start}
}

// followBatches starts a Mirror over src into a Feed that hands every batch
// to each (on the Mirror's goroutine) and checks that revisions never go
// back; the Feed and the Mirror stop with the test.
func followBatches(t *testing.T, src pipeline.Source, each func(pipeline.Batch)) *observedFeed {
	t.Helper()
	o := &observedFeed{}
	o.Feed = pipeline.NewFeed(pipeline.WithObserver(func(b pipeline.Batch) {
		if last := o.rev.Load(); b.Rev < last {
			t.Errorf("batch at revision %d after one at %d", b.Rev, last)
		}
		if each != nil {
			each(b)
		}
		o.rev.Store(b.Rev)
	}))
	m, err := pipeline.Start(context.Background(), src, o.Feed, nil, 10*time.Millisecond, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Stop(); o.Stop() })
	return o
}

// observedFeed is a Feed and the revision of the last batch its observer
// has finished with.
type observedFeed struct {
	*pipeline.Feed
	rev atomic.Int64
}

// waitEqual polls until the Feed holds want and its observer is done with
// revision rev or a later one.
func waitEqual(t *testing.T, o *observedFeed, want map[string]string, rev int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := differs(o.Feed, want)
		if d == "" && o.rev.Load() >= rev {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Feed observed at revision %d, want %d or later: %s", o.rev.Load(), rev, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatchAppliesAPrefixDeleteOfTenThousandKeysAsOneRevision catches up
// over 79 transactions of 128 puts and one delete of the whole prefix: one
// revision with 10,000 events, in one response.
func TestWatchAppliesAPrefixDeleteOfTenThousandKeysAsOneRevision(t *testing.T) {
	const prefix = "/bigdelete/"
	cli := etcdtest.NewServer(t).Client(t)
	src := behind(t, cli, etcdv3.ClientOptions{}, cli, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	putKeys(t, ctx, cli, prefix, 0, 10000)
	del, err := cli.Delete(ctx, prefix, clientv3.WithPrefix())
	if err != nil || del.Deleted != 10000 {
		t.Fatalf("delete prefix: %d deleted, %v", del.Deleted, err)
	}
	var deletes atomic.Int64 // counted on the Mirror's goroutine
	feed := followBatches(t, src,
		func(b pipeline.Batch) {
			for _, ch := range b.Changes {
				if ch.Op == pipeline.Delete {
					deletes.Add(1)
				}
			}
		})
	waitEqual(t, feed, map[string]string{}, del.Header.Revision)
	if n := deletes.Load(); n != 10000 {
		t.Errorf("%d deletes delivered, want 10000", n)
	}
}

// TestWatchCompactedDuringCatchUpEndsEqualToEtcd compacts the history
// under a watch that is still catching up: the Mirror reads a fresh
// snapshot and ends equal to etcd, its revisions never going back.
func TestWatchCompactedDuringCatchUpEndsEqualToEtcd(t *testing.T) {
	const prefix = "/compactcatchup/"
	cli := etcdtest.NewServer(t).Client(t)
	src := behind(t, cli, etcdv3.ClientOptions{}, cli, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := range 3000 {
		if _, err := cli.Put(ctx, fmt.Sprintf("%s%05d", prefix, i%700), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	_, end := etcdContent(t, ctx, cli, prefix)
	var compacted atomic.Bool // set on the Mirror's goroutine
	feed := followBatches(t, src,
		func(b pipeline.Batch) {
			if !compacted.Load() && !b.Resync && len(b.Changes) > 0 {
				compacted.Store(true) // the first catch-up response is in
				if _, err := cli.Compact(ctx, end); err != nil {
					t.Errorf("compact at %d: %v", end, err)
				}
			}
		})
	want, rev := etcdContent(t, ctx, cli, prefix)
	waitEqual(t, feed, want, rev)
	if !compacted.Load() {
		t.Fatal("no catch-up response came before the end")
	}
}

// TestWatchResumedByClientAfterConnectionDropCatchesUp cuts the connection
// while the watch catches up: clientv3 resumes it from the last event it
// delivered, and the Feed ends equal to etcd.
func TestWatchResumedByClientAfterConnectionDropCatchesUp(t *testing.T) {
	const prefix = "/blipcatchup/"
	srv := etcdtest.NewServer(t)
	proxy := etcdtest.NewProxy(t, srv.Endpoints()[0])
	direct := srv.Client(t)
	cli := proxy.Client(t)
	src := behind(t, cli, etcdv3.ClientOptions{DialTimeout: 5 * time.Second}, direct, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var last int64 // the revision of the prefix's last change
	for i := range 3000 {
		resp, err := direct.Put(ctx, fmt.Sprintf("%s%05d", prefix, i%900), fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}
	var dropped atomic.Bool // set on the Mirror's goroutine
	feed := followBatches(t, src,
		func(b pipeline.Batch) {
			if !dropped.Load() && !b.Resync && len(b.Changes) > 0 {
				dropped.Store(true)
				proxy.DropConnections()
			}
		})
	// The Feed must hold etcd's content at the prefix's last change. The
	// store's revision may run ahead of it: on a shared etcd
	// (ETCD_ENDPOINTS) other tests write too, and a quiet prefix's Feed
	// follows the store only through progress notifications, which a
	// grpc-proxy does not forward on request.
	want, _ := etcdContent(t, ctx, direct, prefix)
	waitEqual(t, feed, want, last)
	if !dropped.Load() {
		t.Fatal("no catch-up response came before the end")
	}
}

// watchOnce runs src's watch from rev until it ends or times out, and
// returns its error and what it handed over.
func watchOnce(t *testing.T, src pipeline.Source, rev int64, within time.Duration) ([]pipeline.WatchResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var got []pipeline.WatchResponse
	err := src.Watch(ctx, rev, func(r pipeline.WatchResponse) { got = append(got, r) })
	return got, err
}

// A watch from past the store's revision (the Feed read from an etcd that
// has since been restored at a lower one) would wait there and miss what
// comes before: etcd's answer to the creation gives the store away, and a
// linearizable read confirms it.
func TestWatchFromAboveTheStoreFindsTheHistoryLost(t *testing.T) {
	cli := etcdtest.NewServer(t).Client(t)
	c := etcdv3.FromClient(cli, etcdv3.ClientOptions{RequestTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	src := pipeline.SourceFor(c, "/lost/")
	rev, _, err := src.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, err := watchOnce(t, src, rev+100, 5*time.Second)
	if !errors.Is(err, pipeline.ErrHistoryLost) {
		t.Fatalf("watch from %d over a store at %d: err = %v after %+v, want ErrHistoryLost", rev+100, rev, err, got)
	}
}

// progressCounter counts the progress requests a watch stream receives.
type progressCounter struct {
	grpc.ServerStream
	n *atomic.Int64
}

func (s progressCounter) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if r, ok := m.(*pb.WatchRequest); ok && err == nil && r.GetProgressRequest() != nil {
		s.n.Add(1)
	}
	return err
}

// startGRPCProxy serves etcd's grpc-proxy (KV and Watch) in front of srv
// on a loopback port, counting the progress requests it receives, until
// the test ends.
func startGRPCProxy(t *testing.T, srv *etcdtest.Server) (string, *atomic.Int64) {
	t.Helper()
	up, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		up.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	kv, kvDone := grpcproxy.NewKvProxy(up)
	watch, watchDone := grpcproxy.NewWatchProxy(ctx, zap.NewNop(), up)
	progress := new(atomic.Int64)
	server := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, progressCounter{ServerStream: ss, n: progress})
	}))
	pb.RegisterKVServer(server, kv)
	pb.RegisterWatchServer(server, watch)
	served := make(chan struct{})
	go func() {
		defer close(served)
		server.Serve(ln)
	}()
	t.Cleanup(func() {
		server.Stop()
		<-served
		cancel()
		up.Close()
		<-kvDone
		<-watchDone
	})
	return ln.Addr().String(), progress
}

// etcd's grpc-proxy forwards no progress requests, and logs an error for
// each. When it answers for a watch it shares (its own answer to the
// creation bears no cluster ID), the source asks it for none: the watch is
// taken as caught up after the request timeout.
func TestWatchAsksAGrpcProxyThatGaveItselfAwayForNoProgress(t *testing.T) {
	srv := etcdtest.NewServer(t)
	endpoint, progress := startGRPCProxy(t, srv)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	c := etcdv3.FromClient(cli, etcdv3.ClientOptions{RequestTimeout: 300 * time.Millisecond})
	t.Cleanup(func() {
		c.Close()
		cli.Close()
	})
	const prefix = "/proxied/"
	src := pipeline.SourceFor(c, prefix)
	rev, _, err := src.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// A first watch of the prefix from the same revision, which the
	// proxy's own watch on etcd serves: the source's joins it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first := cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithCreatedNotify())
	if wr := <-first; !wr.Created || wr.Header.GetClusterId() == 0 {
		t.Fatalf("first watch: %+v, want etcd's own answer to its creation", wr)
	}
	// The count sees a progress request on the first watch's stream.
	if err := cli.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}

	wctx, stop := context.WithCancel(ctx)
	var got []pipeline.WatchResponse
	err = src.Watch(wctx, rev+1, func(r pipeline.WatchResponse) {
		got = append(got, r)
		if r.Current {
			stop()
		}
	})
	if len(got) == 0 || !got[len(got)-1].Current {
		t.Fatalf("watch through the proxy ended (%v) after %+v, without saying it caught up", err, got)
	}
	// Only the first watch's request reached the proxy: the source noticed
	// the proxy's own answer to its creation and asked for no progress,
	// neither while catching up nor later.
	if n := progress.Load(); n != 1 {
		t.Fatalf("the proxy received %d progress requests, want the first watch's only: the proxy's own answer to the creation went unnoticed", n)
	}
}
