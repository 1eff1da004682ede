package grpcsd

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

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
