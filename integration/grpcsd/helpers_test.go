package grpcsd

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/grpcsd"
	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/itest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newEtcd starts an embedded etcd (or uses ETCD_ENDPOINTS) stopped last.
func newEtcd(t testing.TB) *etcdtest.Server {
	t.Helper()
	return etcdtest.NewServer(t)
}

// server is a real gRPC server on loopback, serving the standard health
// service and naming itself in the "server" header of every reply.
type server struct {
	name    string
	addr    string
	s       *grpc.Server
	health  *health.Server // its status, SERVING until set otherwise
	accepts *atomic.Int64  // connections accepted
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func startServer(t testing.TB, name string) *server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := countingListener{Listener: l, n: new(atomic.Int64)}
	s := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := grpc.SetHeader(ctx, metadata.Pairs("server", name)); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}))
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(lis)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return &server{name: name, addr: lis.Addr().String(), s: s, health: hs, accepts: lis.n}
}

// value is the JSON instance value of the server with version v.
func (s *server) value(t testing.TB, v string) string {
	t.Helper()
	val, err := instance.Instance{ID: s.name, Name: "app", Version: v, Address: s.addr}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return val
}

// register registers key → value through a Registrar with a short lease,
// deregistered at cleanup.
func register(t testing.TB, c etcdv3.Client, key, value string) *etcdv3.Registrar {
	t.Helper()
	r := etcdv3.NewRegistrar(c, etcdv3.Service{Key: key, Value: value, TTL: etcdv3.NewTTLOption(500*time.Millisecond, 2*time.Second)}, itest.Logger(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.RegisterContext(ctx); err != nil {
		t.Fatalf("register %s: %v", key, err)
	}
	t.Cleanup(r.Deregister)
	return r
}

// newBuilder returns a resolver Builder on c.
func newBuilder(t testing.TB, c etcdv3.Client) *grpcsd.Builder {
	t.Helper()
	b, err := grpcsd.NewBuilder(c, grpcsd.WithLogger(itest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dial returns a ClientConn for target with the version balancer and opts,
// closed at cleanup.
func dial(t testing.TB, b *grpcsd.Builder, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(target, append([]grpc.DialOption{
		grpc.WithResolvers(b),
		grpc.WithDefaultServiceConfig(grpcsd.VersionServiceConfig),
		grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatalf("new client %s: %v", target, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// call makes one health check RPC and returns the name of the server that
// answered it.
func call(ctx context.Context, conn *grpc.ClientConn, opts ...grpc.CallOption) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var header metadata.MD
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, append(opts, grpc.Header(&header))...)
	if err != nil {
		return "", err
	}
	if names := header.Get("server"); len(names) == 1 {
		return names[0], nil
	}
	return "", fmt.Errorf("reply without a server header: %v", header)
}

// spread makes n calls and counts them by server; any error fails the test.
func spread(t testing.TB, ctx context.Context, conn *grpc.ClientConn, n int) map[string]int {
	t.Helper()
	got := make(map[string]int)
	for range n {
		name, err := call(ctx, conn)
		if err != nil {
			t.Fatalf("call: %v", err)
		}
		got[name]++
	}
	return got
}

// servedBy reports whether the calls of n rounds reach exactly the servers
// in want (and no other).
func servedBy(ctx context.Context, conn *grpc.ClientConn, n int, want ...string) bool {
	seen := make(map[string]bool)
	for range n {
		name, err := call(ctx, conn)
		if err != nil {
			return false
		}
		seen[name] = true
	}
	if len(seen) != len(want) {
		return false
	}
	for _, w := range want {
		if !seen[w] {
			return false
		}
	}
	return true
}
