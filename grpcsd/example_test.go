package grpcsd_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/go-kit/kit/sd"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/grpcsd"
)

// serve starts a gRPC health server on loopback that names itself in the
// "server" header of each reply.
func serve(name string) (addr string, stop func()) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	s := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		_ = grpc.SetHeader(ctx, metadata.Pairs("server", name))
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(s, health.NewServer())
	go func() { _ = s.Serve(lis) }()
	return lis.Addr().String(), s.Stop
}

// This example routes RPCs by version. The Instancer is fixed here so that
// the example runs without etcd; in production, leave out
// WithInstancerFactory and pass your etcdv3.Client to NewBuilder.
func Example() {
	v1, stop1 := serve("app-1")
	defer stop1()
	v2, stop2 := serve("app-2")
	defer stop2()
	instances := sd.FixedInstancer{
		`{"id":"app-1","version":"v1","address":"` + v1 + `"}`,
		`{"id":"app-2","version":"v2","address":"` + v2 + `"}`,
	}
	b, err := grpcsd.NewBuilder(nil, grpcsd.WithInstancerFactory(func(context.Context, string) (sd.Instancer, error) {
		return instances, nil
	}))
	if err != nil {
		panic(err)
	}
	conn, err := grpc.NewClient("etcd:///services/app/",
		grpc.WithResolvers(b),
		grpc.WithDefaultServiceConfig(grpcsd.VersionServiceConfig),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	for _, version := range []string{"v2", "v1"} {
		var header metadata.MD
		_, err := client.Check(grpcsd.WithVersion(ctx, version), &healthpb.HealthCheckRequest{}, grpc.Header(&header), grpc.WaitForReady(true))
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s answered by %s\n", version, header.Get("server")[0])
	}
	// Across processes, the version travels in the gRPC metadata.
	var header metadata.MD
	mdCtx := metadata.AppendToOutgoingContext(ctx, grpcsd.MetadataKey, "v2")
	if _, err := client.Check(mdCtx, &healthpb.HealthCheckRequest{}, grpc.Header(&header)); err != nil {
		panic(err)
	}
	fmt.Printf("v2 by metadata answered by %s\n", header.Get("server")[0])

	_, err = client.Check(grpcsd.WithVersion(ctx, "v3"), &healthpb.HealthCheckRequest{})
	fmt.Println(status.Code(err), status.Convert(err).Message())
	// Output:
	// v2 answered by app-2
	// v1 answered by app-1
	// v2 by metadata answered by app-2
	// Unavailable grpcsd: no instance with version "v3" (versions available: "v1", "v2")
}

// This example keeps one connection per key under /backends/agent/ and looks
// them up by path and by id.
func ExamplePool() {
	ctx := context.Background()
	client, err := etcdv3.NewEtcdClient(ctx, []string{"127.0.0.1:2379"}, etcdv3.ClientOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	pool, err := grpcsd.NewPool(ctx, client, []string{"/backends/agent/"},
		grpcsd.WithDialOptions(grpc.WithTransportCredentials(insecure.NewCredentials())),
		grpcsd.WithOnChange(func(ev grpcsd.PoolEvent) {
			fmt.Println(ev.Type, ev.Key, ev.Instance.Address)
		}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer pool.Close()

	// Any agent, in turn:
	if conn, err := pool.Get("/backends/agent/"); err == nil {
		_, _ = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	}
	// The agent registered under /backends/agent/agent1:
	if conn, err := pool.GetByID("/backends/agent/", "agent1"); err == nil {
		_, _ = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	}
}

// This example registers the Builder with gRPC for the whole process, at
// initialisation, so that plain grpc.NewClient calls resolve "etcd:///".
func ExampleRegister() {
	client, err := etcdv3.NewEtcdClient(context.Background(), []string{"127.0.0.1:2379"}, etcdv3.ClientOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	b, err := grpcsd.NewBuilder(client)
	if err != nil {
		fmt.Println(err)
		return
	}
	grpcsd.Register(b)
	conn, err := grpc.NewClient("etcd:///services/app/",
		grpc.WithDefaultServiceConfig(grpcsd.VersionServiceConfig),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
}
