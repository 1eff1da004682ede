package grpcsd

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/grpcsd"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// events records the Pool's callback calls.
type events struct {
	mu  sync.Mutex
	got []grpcsd.PoolEvent
}

func (e *events) record(ev grpcsd.PoolEvent) {
	e.mu.Lock()
	e.got = append(e.got, ev)
	e.mu.Unlock()
}

// find returns the first event of type typ for key.
func (e *events) find(typ grpcsd.PoolEventType, key string) (grpcsd.PoolEvent, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.got {
		if ev.Type == typ && ev.Key == key {
			return ev, true
		}
	}
	return grpcsd.PoolEvent{}, false
}

func newPool(t *testing.T, c etcdv3.Client, prefixes []string, ev *events) *grpcsd.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := grpcsd.NewPool(ctx, c, prefixes,
		grpcsd.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials())),
		grpcsd.WithPoolLogger(itest.Logger(t)),
		grpcsd.WithOnChange(ev.record))
	if err != nil {
		t.Fatalf("new pool: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// waitShutdown waits until conn is closed.
func waitShutdown(t *testing.T, conn *grpc.ClientConn, what string) {
	t.Helper()
	itest.Eventually(t, 5*time.Second, what+" reaches Shutdown", func() bool {
		return conn.GetState() == connectivity.Shutdown
	})
}

func TestPoolLookups(t *testing.T) {
	etcd := newEtcd(t)
	c := itestclient.New(t, etcd.Endpoints())
	agents, others := "/"+t.Name()+"/backends/agent/", "/"+t.Name()+"/backends/other/"
	for _, name := range []string{"agent1", "agent2"} {
		register(t, c, agents+name, startServer(t, name).addr) // plain address values
	}
	register(t, c, others+"other1", startServer(t, "other1").value(t, "v1"))
	ev := &events{}
	p := newPool(t, c, []string{agents, others}, ev)
	ctx := context.Background()

	// Get rotates over the keys under the prefix.
	seen := make(map[string]int)
	for range 4 {
		conn, err := p.Get(agents)
		if err != nil {
			t.Fatal(err)
		}
		name, err := call(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		seen[name]++
	}
	if seen["agent1"] != 2 || seen["agent2"] != 2 {
		t.Errorf("Get served %v, want agent1 and agent2 twice each", seen)
	}
	// GetByID: the id is the key after the prefix.
	conn, err := p.GetByID(agents, "agent2")
	if err != nil {
		t.Fatal(err)
	}
	if name, err := call(ctx, conn); err != nil || name != "agent2" {
		t.Errorf("GetByID(agent2) reached %q, %v", name, err)
	}
	all, err := p.GetAll(agents)
	if err != nil || len(all) != 2 || all[agents+"agent1"] == nil || all[agents+"agent2"] == nil {
		t.Errorf("GetAll = %v, %v; want agent1 and agent2 by key", all, err)
	}
	every, err := p.All()
	if err != nil || len(every) != 3 || every[others+"other1"] == nil {
		t.Errorf("All = %v, %v; want 3 connections", every, err)
	}
	if e, ok := ev.find(grpcsd.Added, others+"other1"); !ok || e.ID != "other1" || e.Instance.Version != "v1" || e.Conn != every[others+"other1"] {
		t.Errorf("added event for other1 = %+v, %v", e, ok)
	}

	// Errors name what is missing.
	if _, err := p.GetByID(agents, "agent9"); !errors.Is(err, grpcsd.ErrNoConn) || !strings.Contains(err.Error(), `"agent9"`) || !strings.Contains(err.Error(), `ids: "agent1", "agent2"`) {
		t.Errorf("GetByID(agent9) = %v, want ErrNoConn naming agent9 and the ids", err)
	}
	if _, err := p.Get("/nowhere/"); !errors.Is(err, grpcsd.ErrNotWatched) || !strings.Contains(err.Error(), `"/nowhere/"`) || !strings.Contains(err.Error(), agents) {
		t.Errorf("Get(/nowhere/) = %v, want ErrNotWatched naming it and the watched prefixes", err)
	}
}

func TestPoolClosesTheConnectionWhenItsKeyGoes(t *testing.T) {
	etcd := newEtcd(t)
	c := itestclient.New(t, etcd.Endpoints())
	agents := "/" + t.Name() + "/backends/agent/"
	r1 := register(t, c, agents+"agent1", startServer(t, "agent1").addr)
	register(t, c, agents+"agent2", startServer(t, "agent2").addr)
	ev := &events{}
	p := newPool(t, c, []string{agents}, ev)
	conn, err := p.GetByID(agents, "agent1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call(context.Background(), conn); err != nil {
		t.Fatal(err)
	}

	r1.Deregister()
	waitShutdown(t, conn, "agent1's connection")
	if e, ok := ev.find(grpcsd.Removed, agents+"agent1"); !ok || e.Conn != conn {
		t.Errorf("removed event = %+v, %v; want agent1's connection", e, ok)
	}
	if _, err := p.GetByID(agents, "agent1"); !errors.Is(err, grpcsd.ErrNoConn) {
		t.Errorf("GetByID(agent1) after removal = %v, want ErrNoConn", err)
	}
	for range 4 {
		conn, err := p.Get(agents)
		if err != nil {
			t.Fatal(err)
		}
		if name, err := call(context.Background(), conn); err != nil || name != "agent2" {
			t.Fatalf("Get after removal reached %q, %v; want agent2", name, err)
		}
	}
}

func TestPoolFollowsNewKeysAndAddressChanges(t *testing.T) {
	etcd := newEtcd(t)
	c := itestclient.New(t, etcd.Endpoints())
	agents := "/" + t.Name() + "/backends/agent/"
	ev := &events{}
	p := newPool(t, c, []string{agents}, ev)
	if _, err := p.Get(agents); !errors.Is(err, grpcsd.ErrNoConn) {
		t.Errorf("Get on an empty prefix = %v, want ErrNoConn", err)
	}

	kv := etcd.Client(t)
	put(t, kv, agents+"agent1", startServer(t, "old").addr)
	var first *grpc.ClientConn
	itest.Eventually(t, 5*time.Second, "agent1 added", func() bool {
		var err error
		first, err = p.GetByID(agents, "agent1")
		return err == nil
	})
	if name, err := call(context.Background(), first); err != nil || name != "old" {
		t.Fatalf("agent1 reached %q, %v; want old", name, err)
	}

	// The same key moves to another address: a new connection replaces
	// the old one, which is closed.
	put(t, kv, agents+"agent1", startServer(t, "new").addr)
	waitShutdown(t, first, "the connection to the old address")
	conn, err := p.GetByID(agents, "agent1")
	if err != nil {
		t.Fatal(err)
	}
	if name, err := call(context.Background(), conn); err != nil || name != "new" {
		t.Errorf("agent1 reached %q, %v; want new", name, err)
	}
	if e, ok := ev.find(grpcsd.Updated, agents+"agent1"); !ok || e.Conn != conn {
		t.Errorf("updated event = %+v, %v; want the new connection", e, ok)
	}
}

func TestPoolCloseClosesEveryConnection(t *testing.T) {
	etcd := newEtcd(t)
	c := itestclient.New(t, etcd.Endpoints())
	agents := "/" + t.Name() + "/backends/agent/"
	register(t, c, agents+"agent1", startServer(t, "agent1").addr)
	register(t, c, agents+"agent2", startServer(t, "agent2").addr)
	p := newPool(t, c, []string{agents}, &events{})
	all, err := p.All()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for key, conn := range all {
		waitShutdown(t, conn, key)
	}
	if _, err := p.Get(agents); !errors.Is(err, grpcsd.ErrClosed) {
		t.Errorf("Get after Close = %v, want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func put(t *testing.T, kv *clientv3.Client, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := kv.Put(ctx, key, value); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// TestPoolPrefixWithoutSlashIgnoresSiblingPrefixes: a prefix not ending in
// "/" is a directory, as the Pool's ids say (under "/backends/agent" the id
// of "/backends/agent/agent1" is "agent1"); keys of the sibling prefixes
// "/backends/agent-x/…" and "/backends/agents/…" are no part of it.
func TestPoolPrefixWithoutSlashIgnoresSiblingPrefixes(t *testing.T) {
	etcd := newEtcd(t)
	c := itestclient.New(t, etcd.Endpoints())
	dir := "/" + t.Name() + "/backends/agent"
	register(t, c, dir+"/agent1", startServer(t, "agent1").addr)
	register(t, c, dir+"-x/sibling1", startServer(t, "sibling1").addr)
	ev := &events{}
	p := newPool(t, c, []string{dir}, ev)
	register(t, c, dir+"s/sibling2", startServer(t, "sibling2").addr) // after the first read
	register(t, c, dir+"/agent2", startServer(t, "agent2").addr)
	itest.Eventually(t, 5*time.Second, "agent2 in the pool", func() bool {
		_, ok := ev.find(grpcsd.Added, dir+"/agent2")
		return ok
	})
	all, err := p.GetAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[dir+"/agent1"] == nil || all[dir+"/agent2"] == nil {
		keys := make([]string, 0, len(all))
		for k := range all {
			keys = append(keys, k)
		}
		t.Fatalf("pool under %q holds %q, want agent1 and agent2 only", dir, keys)
	}
}

// TestPoolCallbackMayStartAnInstancerOfItsPrefix: the callback runs on no
// lock of the watch it shares with the Instancers of its client and
// prefix, at NewPool and after.
func TestPoolCallbackMayStartAnInstancerOfItsPrefix(t *testing.T) {
	etcd := newEtcd(t)
	raw := etcd.Client(t)
	c := itestclient.New(t, etcd.Endpoints())
	agents := "/" + t.Name() + "/backends/agent/"
	put(t, raw, agents+"agent1", "127.0.0.1:1")
	started := make(chan *etcdv3.Instancer, 2)
	onChange := func(ev grpcsd.PoolEvent) {
		if ev.Type != grpcsd.Added {
			return
		}
		in, err := etcdv3.NewInstancer(c, agents, itest.Logger(t))
		if err != nil {
			t.Error(err)
			return
		}
		started <- in
	}
	pools := make(chan *grpcsd.Pool, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p, err := grpcsd.NewPool(ctx, c, []string{agents},
			grpcsd.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials())),
			grpcsd.WithPoolLogger(itest.Logger(t)),
			grpcsd.WithOnChange(onChange))
		if err != nil {
			t.Error(err)
		}
		pools <- p
	}()
	// A deadlock fails the test and leaves everything as it is: stopping
	// would wait for it too.
	var instancers []*etcdv3.Instancer
	wait := func(when string) {
		t.Helper()
		select {
		case in := <-started:
			instancers = append(instancers, in)
		case <-time.After(10 * time.Second):
			t.Fatalf("the callback did not start an Instancer %s within 10s: deadlocked", when)
		}
	}
	wait("at NewPool")
	p := <-pools
	if p == nil {
		t.FailNow()
	}
	put(t, raw, agents+"agent2", "127.0.0.1:2")
	wait("for a new key")
	defer func() {
		p.Close()
		for _, in := range instancers {
			in.Stop()
		}
	}()
	for _, in := range instancers {
		itest.Eventually(t, 5*time.Second, "an Instancer started by the callback sees both keys", func() bool {
			return len(in.State().Instances) == 2
		})
	}
}
