package grpcsd

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/grpcsd"
	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// issued is a unary interceptor that signals on ch (capacity 1) as each RPC
// goes on to gRPC's pick, so that a test acts only once the RPC is waiting.
func issued(ch chan struct{}) grpc.DialOption {
	return grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		select {
		case ch <- struct{}{}:
		default:
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	})
}

// waitForReady starts one wait-for-ready RPC on conn and returns, once the
// RPC is issued, the channel of its outcome.
func waitForReady(t *testing.T, conn *grpc.ClientConn, issuedCh chan struct{}, within time.Duration) <-chan error {
	t.Helper()
	select {
	case <-issuedCh: // an earlier RPC's
	default:
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		var header metadata.MD
		_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true), grpc.Header(&header))
		if names := header.Get("server"); err == nil && (len(names) != 1 || names[0] != "app-1") {
			t.Errorf("served by %q, want app-1", names)
		}
		done <- err
	}()
	<-issuedCh
	return done
}

func TestWaitForReadyRPCWaitsForTheFirstInstance(t *testing.T) {
	etcd := newEtcd(t)
	c := itestclient.New(t, etcd.Endpoints())
	prefix := "/" + t.Name() + "/app/"
	issuedCh := make(chan struct{}, 1)
	conn := dial(t, newBuilder(t, c), "etcd://"+prefix, issued(issuedCh))
	// TRANSIENT_FAILURE once the balancer has the empty prefix: an RPC
	// without wait-for-ready fails at once.
	conn.Connect()
	itest.Eventually(t, 5*time.Second, "the ClientConn in TRANSIENT_FAILURE", func() bool {
		return conn.GetState() == connectivity.TransientFailure
	})
	done := waitForReady(t, conn, issuedCh, 10*time.Second)

	srv := startServer(t, "app-1")
	register(t, c, prefix+"app-1", srv.value(t, "v1"))
	if err := <-done; err != nil {
		t.Errorf("wait-for-ready RPC issued before any instance: %v, want it served once app-1 registers", err)
	}
}

func TestWaitForReadyRPCWaitsThroughAResolverError(t *testing.T) {
	etcd := newEtcd(t)
	if etcd.External() {
		t.Skip("needs an embedded etcd to stop")
	}
	c := itestclient.New(t, etcd.Endpoints())
	prefix := "/" + t.Name() + "/app/"
	issuedCh := make(chan struct{}, 1)
	conn := dial(t, newBuilder(t, c), "etcd://"+prefix, issued(issuedCh))
	conn.Connect()
	itest.Eventually(t, 5*time.Second, "the ClientConn in TRANSIENT_FAILURE", func() bool {
		return conn.GetState() == connectivity.TransientFailure
	})
	etcd.Stop()
	// The balancer has the resolver's error: an RPC without wait-for-ready
	// fails at once, with it.
	itest.Eventually(t, 10*time.Second, "RPCs fail with the resolver's error", func() bool {
		_, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		return err != nil && strings.Contains(err.Error(), "grpcsd: no instance resolved for the target")
	})
	done := waitForReady(t, conn, issuedCh, 20*time.Second)

	etcd.Start()
	srv := startServer(t, "app-1")
	register(t, c, prefix+"app-1", srv.value(t, "v1"))
	if err := <-done; err != nil {
		t.Errorf("wait-for-ready RPC issued while etcd was down: %v, want it served once etcd is back and app-1 registers", err)
	}
}

// weightShare registers app-1 and app-2 under prefix, runs setup (which
// gives app-1 weight 9 against app-2's 1 in some way), waits until the
// ClientConn follows, and returns app-1's share of 1,000 RPCs.
func weightShare(t *testing.T, c etcdv3.Client, prefix string, value func(srv *server) string, setup func()) float64 {
	t.Helper()
	for _, name := range []string{"app-1", "app-2"} {
		srv := startServer(t, name)
		register(t, c, prefix+name, value(srv))
	}
	conn := dial(t, newBuilder(t, c), "etcd://"+prefix)
	ctx := context.Background()
	itest.Eventually(t, 5*time.Second, "both servers answer", func() bool {
		return servedBy(ctx, conn, 20, "app-1", "app-2")
	})
	setup()
	// The weight reaches the picker through etcd's watch: poll until app-1
	// takes most calls, then measure.
	deadline := time.Now().Add(5 * time.Second)
	for got := spread(t, ctx, conn, 20); got["app-1"] < 16; got = spread(t, ctx, conn, 20) {
		if time.Now().After(deadline) {
			t.Fatalf("after 5 s, 20 calls went %v: want app-1 (weight 9) to take about 9 in 10", got)
		}
	}
	const n = 1000
	got := spread(t, ctx, conn, n)
	share := float64(got["app-1"]) / n
	t.Logf("app-1 (weight 9) took %d of %d RPCs (%.1f%%), app-2 (weight 1) %d", got["app-1"], n, 100*share, got["app-2"])
	return share
}

func TestRegisteredWeightSharesGRPCPicks(t *testing.T) {
	etcd := newEtcd(t)
	c := itestclient.New(t, etcd.Endpoints())
	weights := map[string]int{"app-1": 9, "app-2": 1}
	share := weightShare(t, c, "/"+t.Name()+"/app/", func(srv *server) string {
		val, err := instance.Instance{ID: srv.name, Name: "app", Version: "v1", Address: srv.addr, Weight: weights[srv.name]}.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return val
	}, func() {})
	if share < 0.85 || share > 0.95 {
		t.Errorf("app-1's share = %.1f%%, want 85%% to 95%% (weight 9 against 1)", 100*share)
	}
}

func TestSetWeightOverrideSharesGRPCPicks(t *testing.T) {
	etcd := newEtcd(t)
	c := itestclient.New(t, etcd.Endpoints())
	cat, err := catalog.New(c, catalog.WithRoot("/"+t.Name()+"/"))
	if err != nil {
		t.Fatal(err)
	}
	share := weightShare(t, c, cat.Root()+"app/", func(srv *server) string { return srv.value(t, "v1") }, func() {
		// What `etcdsd set-weight app app-1 9` writes.
		if err := cat.SetProperty(context.Background(), "app", "app-1", catalog.PropWeight, "9"); err != nil {
			t.Fatal(err)
		}
	})
	if share < 0.85 || share > 0.95 {
		t.Errorf("app-1's share = %.1f%%, want 85%% to 95%% (weight override 9 against 1)", 100*share)
	}
}

// TestWaitForReadyRPCForAVersionWaitsForItsFirstInstance: during a rollout,
// a wait-for-ready RPC for v2 issued while only v1 is known waits for v2's
// first instance; one without wait-for-ready fails at once, Unavailable,
// naming the versions there are.
func TestWaitForReadyRPCForAVersionWaitsForItsFirstInstance(t *testing.T) {
	etcd := newEtcd(t)
	c := itestclient.New(t, etcd.Endpoints())
	prefix := "/" + t.Name() + "/app/"
	register(t, c, prefix+"app-1", startServer(t, "app-1").value(t, "v1"))
	conn := dial(t, newBuilder(t, c), "etcd://"+prefix)
	ctx := context.Background()
	if _, err := call(ctx, conn); err != nil {
		t.Fatal(err)
	}
	v2 := grpcsd.WithVersion(ctx, "v2")
	if _, err := call(v2, conn); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `no instance with version "v2" (versions available: "v1")`) {
		t.Fatalf("RPC for v2 without wait-for-ready: %v, want Unavailable naming v2 and v1", err)
	}

	done := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(v2, 10*time.Second)
		defer cancel()
		name, err := call(wctx, conn, grpc.WaitForReady(true))
		if err == nil && name != "app-2" {
			err = fmt.Errorf("served by %q, want app-2", name)
		}
		done <- err
	}()
	// The RPC waits: a pick fails at once or not at all.
	select {
	case err := <-done:
		t.Fatalf("wait-for-ready RPC for v2 ended before any v2 instance registered: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	register(t, c, prefix+"app-2", startServer(t, "app-2").value(t, "v2"))
	if err := <-done; err != nil {
		t.Errorf("wait-for-ready RPC for v2: %v, want it served once app-2 (v2) registers", err)
	}
}
