package grpcsd

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/etcdsd/etcdsd/grpcsd"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// healthCheckedServiceConfig is grpcsd.VersionServiceConfig with gRPC's
// client-side health checking of the whole server (service name ""). The
// client must also import google.golang.org/grpc/health, as this package
// does.
const healthCheckedServiceConfig = `{"loadBalancingConfig":[{"` + grpcsd.VersionBalancerName + `":{}}],"healthCheckConfig":{"serviceName":""}}`

// healthSetup registers app-1 (v1) and app-2 (v2 if split, else v1), dials
// them with serviceConfig, and waits until both answer.
func healthSetup(t *testing.T, serviceConfig string, split bool) (sick *server, conn *grpc.ClientConn) {
	t.Helper()
	etcd := newEtcd(t)
	client := itestclient.New(t, etcd.Endpoints())
	prefix := "/" + t.Name() + "/app/"
	sick, well := startServer(t, "app-1"), startServer(t, "app-2")
	v2 := "v1"
	if split {
		v2 = "v2"
	}
	register(t, client, prefix+"app-1", sick.value(t, "v1"))
	register(t, client, prefix+"app-2", well.value(t, v2))
	conn, err := grpc.NewClient("etcd://"+prefix,
		grpc.WithResolvers(newBuilder(t, client)),
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	itest.Eventually(t, 5*time.Second, "both servers answer", func() bool {
		return servedBy(context.Background(), conn, 6, "app-1", "app-2")
	})
	return sick, conn
}

func TestNotServingServerStopsReceivingRPCs(t *testing.T) {
	sick, conn := healthSetup(t, healthCheckedServiceConfig, false)
	ctx := context.Background()
	// app-1 says it is not serving; its process, connection and key stay.
	sick.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	itest.Eventually(t, 5*time.Second, "calls served by app-2 only", func() bool {
		return servedBy(ctx, conn, 6, "app-2")
	})
	if got := spread(t, ctx, conn, 50); got["app-2"] != 50 {
		t.Fatalf("calls = %v, want all 50 on app-2", got)
	}
	if got := spread(t, grpcsd.WithVersion(ctx, "v1"), conn, 20); got["app-2"] != 20 {
		t.Fatalf("v1 calls = %v, want all 20 on app-2", got)
	}
	if n := sick.accepts.Load(); n != 1 {
		t.Fatalf("app-1 accepted %d connections, want its one kept open", n)
	}

	sick.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	itest.Eventually(t, 5*time.Second, "app-1 back", func() bool {
		return servedBy(ctx, conn, 6, "app-1", "app-2")
	})
}

func TestVersionWhoseServersAreNotServingFailsWithTheHealthError(t *testing.T) {
	sick, conn := healthSetup(t, healthCheckedServiceConfig, true)
	ctx := context.Background()
	sick.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	itest.Eventually(t, 5*time.Second, "calls served by app-2 only", func() bool {
		return servedBy(ctx, conn, 6, "app-2")
	})
	// The version balancer does not fall back to another version.
	_, err := call(grpcsd.WithVersion(ctx, "v1"), conn)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "health check failed. status=NOT_SERVING") {
		t.Fatalf("v1 call: err = %v, want Unavailable naming the failed health check", err)
	}
}

// The control: without healthCheckConfig the servers' status is not
// watched, and a NOT_SERVING server keeps its share.
func TestWithoutHealthCheckConfigNotServingServerKeepsItsShare(t *testing.T) {
	sick, conn := healthSetup(t, grpcsd.VersionServiceConfig, false)
	ctx := context.Background()
	sick.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if got := spread(t, ctx, conn, 20); got["app-1"] != 10 {
		t.Fatalf("calls = %v, want 10 of 20 still on app-1", got)
	}
}
