package grpcsd

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/grpcsd"
	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// setup is an etcd, a client, two v1 servers and one v2 server registered
// under the test's own prefix, and a ClientConn on that prefix.
type setup struct {
	etcd    *etcdtest.Server
	client  *etcdv3.EtcdClient
	prefix  string
	servers map[string]*server
	regs    map[string]*etcdv3.Registrar
	conn    *grpc.ClientConn
}

func newSetup(t *testing.T) *setup {
	t.Helper()
	etcd := newEtcd(t)
	s := &setup{
		etcd:    etcd,
		client:  itestclient.New(t, etcd.Endpoints()),
		prefix:  "/" + t.Name() + "/app/",
		servers: make(map[string]*server),
		regs:    make(map[string]*etcdv3.Registrar),
	}
	s.add(t, "app-1", "v1")
	s.add(t, "app-2", "v1")
	s.add(t, "app-3", "v2")
	s.conn = dial(t, newBuilder(t, s.client), "etcd://"+s.prefix)
	itest.Eventually(t, 5*time.Second, "all three servers answer", func() bool {
		return servedBy(context.Background(), s.conn, 9, "app-1", "app-2", "app-3")
	})
	return s
}

// add starts a server and registers it with version v.
func (s *setup) add(t *testing.T, name, v string) {
	t.Helper()
	srv := startServer(t, name)
	s.servers[name] = srv
	s.regs[name] = register(t, s.client, s.prefix+name, srv.value(t, v))
}

func TestRequestsSpreadAcrossServers(t *testing.T) {
	s := newSetup(t)
	got := spread(t, context.Background(), s.conn, 30)
	for _, name := range []string{"app-1", "app-2", "app-3"} {
		if got[name] != 10 {
			t.Errorf("calls per server = %v, want 10 each (round robin)", got)
			break
		}
	}
}

func TestRoutesByVersionFromContext(t *testing.T) {
	s := newSetup(t)
	if got := spread(t, grpcsd.WithVersion(context.Background(), "v2"), s.conn, 10); got["app-3"] != 10 {
		t.Errorf("v2 calls = %v, want all 10 on app-3", got)
	}
	if got := spread(t, grpcsd.WithVersion(context.Background(), "v1"), s.conn, 10); got["app-1"] != 5 || got["app-2"] != 5 {
		t.Errorf("v1 calls = %v, want 5 on app-1 and 5 on app-2", got)
	}
}

func TestRoutesByVersionFromMetadata(t *testing.T) {
	s := newSetup(t)
	ctx := metadata.AppendToOutgoingContext(context.Background(), grpcsd.MetadataKey, "v2")
	if got := spread(t, ctx, s.conn, 10); got["app-3"] != 10 {
		t.Errorf("calls with %s: v2 = %v, want all 10 on app-3", grpcsd.MetadataKey, got)
	}
}

func TestNoMatchingVersionFailsNamingVersions(t *testing.T) {
	s := newSetup(t)
	_, err := call(grpcsd.WithVersion(context.Background(), "v9"), s.conn)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	want := `grpcsd: no instance with version "v9" (versions available: "v1", "v2")`
	if msg := status.Convert(err).Message(); msg != want {
		t.Errorf("message = %q, want %q", msg, want)
	}
}

func TestStoppedServerIsRemovedAndTrafficContinues(t *testing.T) {
	s := newSetup(t)
	ctx := context.Background()
	s.servers["app-3"].s.Stop()
	// Before its key goes, the dead server is out of the rotation: every
	// call succeeds on the others.
	itest.Eventually(t, 5*time.Second, "calls served by app-1 and app-2 only", func() bool {
		return servedBy(ctx, s.conn, 6, "app-1", "app-2")
	})
	if got := spread(t, ctx, s.conn, 20); got["app-1"]+got["app-2"] != 20 {
		t.Errorf("calls = %v, want all 20 on app-1 and app-2", got)
	}
	s.regs["app-3"].Deregister()
	// Once its key is gone, v2 is no longer known at all.
	itest.Eventually(t, 5*time.Second, "v2 unknown after app-3 is deregistered", func() bool {
		_, err := call(grpcsd.WithVersion(ctx, "v2"), s.conn)
		return err != nil && strings.Contains(err.Error(), `no instance with version "v2" (versions available: "v1")`)
	})
	if got := spread(t, ctx, s.conn, 20); got["app-1"] != 10 || got["app-2"] != 10 {
		t.Errorf("calls = %v, want 10 on app-1 and 10 on app-2", got)
	}
}

func TestNewServerIsUsedWithoutRestartingTheClient(t *testing.T) {
	s := newSetup(t)
	s.add(t, "app-4", "v3")
	itest.Eventually(t, 5*time.Second, "app-4 answers", func() bool {
		return servedBy(context.Background(), s.conn, 12, "app-1", "app-2", "app-3", "app-4")
	})
	if got := spread(t, grpcsd.WithVersion(context.Background(), "v3"), s.conn, 5); got["app-4"] != 5 {
		t.Errorf("v3 calls = %v, want all on app-4", got)
	}
}

func TestResolverRecoversAfterEtcdRestart(t *testing.T) {
	s := newSetup(t)
	if s.etcd.External() {
		t.Skip("needs an embedded etcd to restart")
	}
	ctx := context.Background()
	s.etcd.Stop()
	// While etcd is down the ClientConn keeps its addresses.
	if got := spread(t, ctx, s.conn, 9); len(got) != 3 {
		t.Errorf("calls during the outage = %v, want all three servers", got)
	}
	s.etcd.Start()
	// The watch resumes on its own: a server registered after the restart
	// gets traffic, with no action on the ClientConn.
	s.add(t, "app-4", "v3")
	itest.Eventually(t, 10*time.Second, "app-4, registered after the restart, answers v3 calls", func() bool {
		name, err := call(grpcsd.WithVersion(ctx, "v3"), s.conn)
		return err == nil && name == "app-4"
	})
}

func TestClosingTheClientConnStopsTheResolver(t *testing.T) {
	s := newSetup(t)
	b := newBuilder(t, s.client)
	before := goleak.IgnoreCurrent()
	for range 5 {
		conn := dial(t, b, "etcd://"+s.prefix)
		if _, err := call(context.Background(), conn); err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	if s.etcd.External() {
		// Through ETCD_ENDPOINTS every call goes through etcdtest's
		// namespace proxy, which runs in this process and starts and keeps
		// goroutines of its own (leases, shared watches) for the test's
		// client: the difference below would count them. The embedded run
		// makes the check.
		t.Skip("the goroutine check needs an embedded etcd: with ETCD_ENDPOINTS the in-process namespace proxy adds goroutines of its own")
	}
	// Every goroutine the five ClientConns started (resolver, Instancer,
	// watch, connections) has ended, while etcd and the servers still run.
	if err := goleak.Find(before); err != nil {
		t.Error(err)
	}
}

func TestMetadataChangeKeepsTheConnection(t *testing.T) {
	etcd := newEtcd(t)
	c := itestclient.New(t, etcd.Endpoints())
	kv := etcd.Client(t)
	prefix := "/" + t.Name() + "/app/"
	srv := startServer(t, "app-1")
	conn := dial(t, newBuilder(t, c), "etcd://"+prefix)
	ctx := context.Background()
	for i, v := range []string{"v1", "v2", "v3", "v4"} {
		val, err := instance.Instance{ID: "app-1", Version: v, Address: srv.addr, Weight: i + 1, Metadata: map[string]string{"rev": v}}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		put(t, kv, prefix+"app-1", val)
		itest.Eventually(t, 5*time.Second, "the ClientConn sees version "+v, func() bool {
			_, err := call(grpcsd.WithVersion(ctx, v), conn)
			return err == nil
		})
	}
	if n := srv.accepts.Load(); n != 1 {
		t.Errorf("server accepted %d connections, want 1: a change of version, weight or metadata must not reconnect", n)
	}
}

func TestEmptyPrefixFailsSayingNoInstance(t *testing.T) {
	etcd := newEtcd(t)
	c := itestclient.New(t, etcd.Endpoints())
	conn := dial(t, newBuilder(t, c), "etcd:///"+t.Name()+"/nothing/")
	_, err := call(context.Background(), conn)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "grpcsd: no instance registered for the target") {
		t.Errorf("err = %v, want Unavailable saying no instance is registered", err)
	}
}

func TestUnreachableEtcdFailsWithTheResolverError(t *testing.T) {
	etcd := newEtcd(t)
	if etcd.External() {
		t.Skip("needs an embedded etcd to stop")
	}
	c := itestclient.New(t, etcd.Endpoints())
	etcd.Stop()
	conn := dial(t, newBuilder(t, c), "etcd:///"+t.Name()+"/app/")
	// The first error comes when the initial read gives up, after the
	// client's request timeout (2 s here); the RPC waits until then.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	want := `grpcsd: watch "/` + t.Name() + `/app/"`
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want Unavailable carrying the resolver's error %q", err, want)
	}
}

func TestTargetWithoutTrailingSlashIgnoresSiblingPrefixes(t *testing.T) {
	etcd := newEtcd(t)
	c := itestclient.New(t, etcd.Endpoints())
	root := "/" + t.Name()
	add := func(key, name string) {
		srv := startServer(t, name)
		register(t, c, root+key, srv.value(t, "v1"))
	}
	add("/app/app-1", "app-1")
	add("/apple/apple-1", "apple-1")
	add("/app-canary/canary-1", "canary-1")
	conn := dial(t, newBuilder(t, c), "etcd://"+root+"/app")
	ctx := context.Background()
	itest.Eventually(t, 5*time.Second, "app-1 answers", func() bool {
		name, err := call(ctx, conn)
		return err == nil && name == "app-1"
	})
	// Siblings registered later stay out as well: app-2, registered after
	// them, answering means the watch has passed their keys.
	add("/apple/apple-2", "apple-2")
	add("/app-canary/canary-2", "canary-2")
	add("/app/app-2", "app-2")
	itest.Eventually(t, 5*time.Second, "app-2 answers", func() bool {
		name, err := call(ctx, conn)
		return err == nil && name == "app-2"
	})
	if got := spread(t, ctx, conn, 40); got["app-1"]+got["app-2"] != 40 {
		t.Errorf("calls to etcd://%s/app = %v, want all 40 on app-1 and app-2: a sibling prefix's instance was used", root, got)
	}
}
