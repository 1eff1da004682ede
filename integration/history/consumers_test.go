package history

import (
	"context"
	"errors"
	"io"
	"net/url"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/resolver"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/endpointer"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/grpcsd"
	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// service is the catalog service whose instances the scenarios write:
// every key is prefix + id.
const (
	service = "app"
	prefix  = catalog.DefaultRoot + service + "/"
)

// follow starts every consumer on client c, their names ending in tag: an
// Instancer with a subscriber of its sd.Events, a Subscription of its Feed
// and an endpointer on it, a gRPC resolver and a catalog.Watch. They stop
// at cleanup.
func (k *checker) follow(t testing.TB, c *etcdv3.EtcdClient, tag string) {
	t.Helper()
	in, err := etcdv3.NewInstancer(c, k.prefix, k.tally.logger())
	if err != nil {
		t.Fatalf("new instancer: %v", err)
	}
	t.Cleanup(in.Stop)
	k.followEvents(t, in, tag)
	k.followFeed(t, in.Feed(), tag)
	k.followEndpointer(t, in, tag)
	k.followResolver(t, c, tag)
	k.followCatalog(t, c, tag)
	k.followRaw(t, c.EtcdClient(), tag)
}

// followRaw reads the prefix and watches it from the next revision with
// clientv3 alone, on the consumers' client and link, reading again when
// the watch is compacted: a control that tells a fault of the pipeline
// from one below it. After each response the state must be etcd's at its
// last event's revision.
func (k *checker) followRaw(t testing.TB, cli *clientv3.Client, tag string) {
	c := k.consumer("raw clientv3 watch"+tag, "raw watch")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err := cli.Get(rctx, k.prefix, clientv3.WithPrefix())
			rcancel()
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			c.reset()
			for _, kv := range resp.Kvs {
				c.put(string(kv.Key), string(kv.Value))
			}
			c.checkAt(resp.Header.Revision)
			for wr := range cli.Watch(ctx, k.prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
				if wr.Err() != nil || len(wr.Events) == 0 {
					continue // a compacted watch is closed after this
				}
				for _, ev := range wr.Events {
					if ev.Type == clientv3.EventTypeDelete {
						c.del(string(ev.Kv.Key))
					} else {
						c.put(string(ev.Kv.Key), string(ev.Kv.Value))
					}
				}
				c.checkAt(wr.Events[len(wr.Events)-1].Kv.ModRevision)
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// loop runs body in a goroutine until cleanup.
func loop(t testing.TB, body func(quit <-chan struct{})) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		body(quit)
	}()
	t.Cleanup(func() {
		close(quit)
		<-done
	})
}

func (k *checker) followEvents(t testing.TB, in *etcdv3.Instancer, tag string) {
	c := k.consumer("instancer sd.Events"+tag, "instancer")
	ch := make(chan sd.Event)
	loop(t, func(quit <-chan struct{}) {
		for {
			select {
			case ev := <-ch:
				if ev.Err == nil && c.setValues(ev.Instances) {
					c.check()
				}
			case <-quit:
				return
			}
		}
	})
	in.Register(ch)
	t.Cleanup(func() { in.Deregister(ch) })
}

// followFeed applies the Feed's batches: after each, the content must be
// etcd's state at exactly the batch's revision.
func (k *checker) followFeed(t testing.TB, f *pipeline.Feed, tag string) {
	c := k.consumer("feed"+tag, "feed")
	sub := f.Subscribe()
	t.Cleanup(sub.Close)
	loop(t, func(quit <-chan struct{}) {
		for {
			select {
			case <-sub.Ready():
			case <-quit:
				return
			}
			b := sub.Take()
			if b.Reset {
				c.reset()
			}
			for _, ch := range b.Changes {
				if ch.Op == pipeline.Delete {
					c.del(ch.Key)
				} else {
					c.put(ch.Key, ch.Value)
				}
			}
			if b.Rev > 0 {
				c.checkAt(b.Rev)
			}
		}
	})
}

// followEndpointer samples the endpointer's routable set every few
// milliseconds.
func (k *checker) followEndpointer(t testing.TB, in *etcdv3.Instancer, tag string) {
	c := k.consumer("endpointer"+tag, "endpointer")
	factory := func(string) (endpoint.Endpoint, io.Closer, error) { return endpoint.Nop, nil, nil }
	e, err := endpointer.New(in, factory, nil)
	if err != nil {
		t.Fatalf("new endpointer: %v", err)
	}
	t.Cleanup(e.Close)
	loop(t, func(quit <-chan struct{}) {
		for {
			at := time.Now()
			insts := e.Instances()
			values := make([]string, len(insts))
			for i, inst := range insts {
				values[i] = inst.Address
			}
			if c.setValues(values) {
				c.check()
			}
			// Every 5 ms, or less often when a sample costs more than
			// a third of the time: with 10,000 instances it sorts them.
			select {
			case <-time.After(max(5*time.Millisecond, 2*time.Since(at))):
			case <-quit:
				return
			}
		}
	})
}

// recordingCC is the gRPC ClientConn a resolver reports to: it checks
// every state.
type recordingCC struct {
	resolver.ClientConn
	c *consumer
}

func (cc *recordingCC) UpdateState(s resolver.State) error {
	values := make([]string, len(s.Addresses))
	for i, a := range s.Addresses {
		values[i] = a.Addr
	}
	if cc.c.setValues(values) {
		cc.c.check()
	}
	return nil
}

func (cc *recordingCC) ReportError(error) {}

func (k *checker) followResolver(t testing.TB, client *etcdv3.EtcdClient, tag string) {
	b, err := grpcsd.NewBuilder(client, grpcsd.WithLogger(k.tally.logger()))
	if err != nil {
		t.Fatalf("new builder: %v", err)
	}
	cc := &recordingCC{c: k.consumer("resolver"+tag, "resolver")}
	r, err := b.Build(resolver.Target{URL: url.URL{Scheme: b.Scheme(), Path: k.prefix}}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatalf("build resolver: %v", err)
	}
	t.Cleanup(r.Close)
}

// followCatalog applies catalog.Watch's events to its first state. The
// state is checked where a run of events ends: after the last event of a
// revision seen by the watch it must be etcd's state at exactly that
// revision; after a resync (the net difference of a fresh snapshot) it
// must be etcd's state at some revision.
func (k *checker) followCatalog(t testing.TB, client *etcdv3.EtcdClient, tag string) {
	c := k.consumer("catalog.Watch"+tag, "catalog")
	cat, err := catalog.New(client, catalog.WithLogger(k.tally.logger()))
	if err != nil {
		t.Fatalf("new catalog: %v", err)
	}
	// Without a deadline, Watch gives its first reads (the instances, then
	// the properties) etcdv3.DefaultRequestTimeout together, which 10,000
	// instances read under -race on a busy machine can use up: a far
	// deadline gives them the time; the watch ends at cleanup long before.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	// Watch fails fast when etcd is unreachable; on a machine starved of
	// CPU, the test's 400 ms dial timeout can pass with the connection out
	// of READY. That is no state delivered, so no violation: start again,
	// within a deadline.
	var events <-chan catalog.Event
	deadline := time.Now().Add(30 * time.Second)
	for {
		events, err = cat.Watch(ctx, catalog.WatchService(service))
		if err == nil || !errors.Is(err, etcdv3.ErrUnreachable) || time.Now().After(deadline) {
			break
		}
		t.Logf("catalog watch, starting again: %v", err)
	}
	if err != nil {
		cancel()
		t.Fatalf("catalog watch: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var rev int64
		resync, dirty := false, false
		for ev := range events {
			if ev.Kind != catalog.KindInstance || ev.Err != nil || ev.Recovered {
				continue
			}
			if dirty {
				switch {
				case !resync && (ev.Resync || ev.Revision > rev):
					c.checkAt(rev)
				case resync && (!ev.Resync || ev.Revision < rev):
					c.check()
				}
			}
			key := k.prefix + ev.ID
			if ev.Type == catalog.Delete {
				c.del(key)
			} else {
				c.put(key, ev.Instance.Address)
			}
			rev, resync, dirty = ev.Revision, ev.Resync, true
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}
