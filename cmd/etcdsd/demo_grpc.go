package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/grpcsd"
	"github.com/etcdsd/etcdsd/instance"
)

// grpcDemoPrefix is where the gRPC demo's servers register.
const grpcDemoPrefix = "/etcdsd-demo/grpc/app/"

// grpcDemoServer is one gRPC server of the demo: the standard health service,
// naming itself in the "server" header of every reply.
type grpcDemoServer struct {
	name, version, addr string
	srv                 *grpc.Server
	done                chan struct{}
	reg                 *etcdv3.Registrar
}

// runGRPCDemo narrates version routing over gRPC on the etcd at endpoints:
// it starts two v1 servers and one v2 server on loopback, registers them,
// and calls them through a ClientConn built on etcdsd's resolver and version
// balancer. Everything it starts is stopped before it returns.
func runGRPCDemo(ctx context.Context, out io.Writer, endpoints []string) (err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	say := func(format string, args ...any) { fmt.Fprintf(out, "   "+format+"\n", args...) }

	client, err := etcdv3.NewEtcdClient(ctx, endpoints, etcdv3.ClientOptions{})
	if err != nil {
		return fmt.Errorf("grpc demo: %w", err)
	}
	defer client.Close()

	var servers []*grpcDemoServer
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	for _, sv := range []struct{ name, version string }{{"app-1", "v1"}, {"app-2", "v1"}, {"app-3", "v2"}} {
		s, err := startGRPCDemoServer(ctx, client, sv.name, sv.version)
		if err != nil {
			return fmt.Errorf("grpc demo: %w", err)
		}
		servers = append(servers, s)
		say("Started gRPC server %s (version %s) on %s and registered it under %s.", s.name, s.version, s.addr, grpcDemoPrefix+s.name)
	}

	b, err := grpcsd.NewBuilder(client)
	if err != nil {
		return fmt.Errorf("grpc demo: %w", err)
	}
	conn, err := grpc.NewClient("etcd://"+grpcDemoPrefix,
		grpc.WithResolvers(b),
		grpc.WithDefaultServiceConfig(grpcsd.VersionServiceConfig),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("grpc demo: new client: %w", err)
	}
	defer conn.Close()
	say("Built one ClientConn for etcd://%s with the %s balancer.", grpcDemoPrefix, grpcsd.VersionBalancerName)

	if err := grpcDemoUntil(ctx, conn, "app-1", "app-2", "app-3"); err != nil {
		return err
	}
	counts, err := grpcDemoCalls(ctx, conn, 12)
	if err != nil {
		return err
	}
	say("12 requests without a version were spread over all three: %s.", counts)

	counts, err = grpcDemoCalls(grpcsd.WithVersion(ctx, "v2"), conn, 6)
	if err != nil {
		return err
	}
	say("6 requests with grpcsd.WithVersion(ctx, \"v2\") went only to v2: %s.", counts)

	counts, err = grpcDemoCalls(metadata.AppendToOutgoingContext(ctx, grpcsd.MetadataKey, "v2"), conn, 6)
	if err != nil {
		return err
	}
	say("6 requests with the gRPC metadata %s: v2, as another process would send them, went only to v2: %s.", grpcsd.MetadataKey, counts)

	_, err = grpcDemoCall(grpcsd.WithVersion(ctx, "v3"), conn)
	if err == nil {
		return errors.New("grpc demo: a request for version v3 succeeded, want a no-match error")
	}
	say("A request for version v3 failed with %s: %s", status.Code(err), status.Convert(err).Message())

	servers[0].stop()
	say("Stopped app-1 and deregistered it.")
	if err := grpcDemoUntil(grpcsd.WithVersion(ctx, "v1"), conn, "app-2"); err != nil {
		return err
	}
	counts, err = grpcDemoCalls(ctx, conn, 8)
	if err != nil {
		return err
	}
	say("8 requests without a version kept working on the other two: %s.", counts)
	return nil
}

func startGRPCDemoServer(ctx context.Context, client etcdv3.Client, name, version string) (*grpcDemoServer, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := grpc.SetHeader(ctx, metadata.Pairs("server", name)); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	s := &grpcDemoServer{name: name, version: version, addr: lis.Addr().String(), srv: srv, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = srv.Serve(lis)
	}()
	value, err := instance.Instance{ID: name, Name: "app", Version: version, Address: s.addr}.Encode()
	if err != nil {
		s.stop()
		return nil, err
	}
	s.reg = etcdv3.NewRegistrar(client, etcdv3.Service{Key: grpcDemoPrefix + name, Value: value, TTL: etcdv3.NewTTLOption(time.Second, 3*time.Second)}, nil)
	if err := s.reg.RegisterContext(ctx); err != nil {
		s.stop()
		return nil, fmt.Errorf("register %s: %w", name, err)
	}
	return s, nil
}

// stop deregisters the server and stops it; it is idempotent.
func (s *grpcDemoServer) stop() {
	if s.reg != nil {
		s.reg.Deregister()
	}
	s.srv.Stop()
	<-s.done
}

// grpcDemoCall makes one RPC and returns the name of the server that
// answered.
func grpcDemoCall(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var header metadata.MD
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header)); err != nil {
		return "", err
	}
	if names := header.Get("server"); len(names) == 1 {
		return names[0], nil
	}
	return "", fmt.Errorf("reply without a server header")
}

// grpcDemoCounts is how many calls each server answered.
type grpcDemoCounts map[string]int

func (c grpcDemoCounts) String() string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%s %d", name, c[name]))
	}
	return strings.Join(parts, ", ")
}

func grpcDemoCalls(ctx context.Context, conn *grpc.ClientConn, n int) (grpcDemoCounts, error) {
	counts := make(grpcDemoCounts)
	for range n {
		name, err := grpcDemoCall(ctx, conn)
		if err != nil {
			return nil, fmt.Errorf("grpc demo: call: %w", err)
		}
		counts[name]++
	}
	return counts, nil
}

// grpcDemoUntil polls until calls made with ctx reach exactly want, or ctx
// ends.
func grpcDemoUntil(ctx context.Context, conn *grpc.ClientConn, want ...string) error {
	for {
		counts, err := grpcDemoCalls(ctx, conn, 3*len(want))
		if err == nil && len(counts) == len(want) {
			ok := true
			for _, w := range want {
				ok = ok && counts[w] > 0
			}
			if ok {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("grpc demo: waiting for %v to answer: %w", want, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
