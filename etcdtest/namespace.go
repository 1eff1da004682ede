package etcdtest

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/namespace"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// namespaceProxy gives one test its own keyspace in a shared external etcd:
// a loopback gRPC proxy (etcd's own grpcproxy) that puts a prefix unique to
// the test before every key, the way `etcd grpc-proxy --namespace` does.
// Tests that run against ETCD_ENDPOINTS then never see each other's keys,
// nor keys left by earlier runs, and the prefix is deleted when the test
// ends. Leases, watches and transactions go through unchanged; compaction
// stays global.
type namespaceProxy struct {
	endpoint string
	cancel   context.CancelFunc
	server   *grpc.Server
	served   sync.WaitGroup
	done     []<-chan struct{}
	cli      *clientv3.Client
	raw      clientv3.KV // the unprefixed view, to delete the namespace
	prefix   string
}

// startNamespaceProxy starts a namespace proxy to the external endpoints and
// stops it, deleting its keys, when tb's test ends.
func startNamespaceProxy(tb testing.TB, endpoints []string) *namespaceProxy {
	tb.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		tb.Fatalf("etcdtest: connect to %s %v: %v", EnvEndpoints, endpoints, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cli.Close()
		tb.Fatalf("etcdtest: namespace proxy: %v", err)
	}
	p := &namespaceProxy{endpoint: ln.Addr().String(), cli: cli, raw: cli.KV, prefix: "/etcdtest/" + uniqueToken() + "/"}
	cli.KV = namespace.NewKV(cli.KV, p.prefix)
	cli.Watcher = namespace.NewWatcher(cli.Watcher, p.prefix)
	cli.Lease = namespace.NewLease(cli.Lease, p.prefix)

	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	kv, kvDone := grpcproxy.NewKvProxy(cli)
	watch, watchDone := grpcproxy.NewWatchProxy(ctx, zap.NewNop(), cli)
	lease, leaseDone := grpcproxy.NewLeaseProxy(ctx, cli)
	p.done = []<-chan struct{}{kvDone, watchDone, leaseDone}
	p.server = grpc.NewServer()
	pb.RegisterKVServer(p.server, kv)
	pb.RegisterWatchServer(p.server, watch)
	pb.RegisterLeaseServer(p.server, lease)
	pb.RegisterMaintenanceServer(p.server, grpcproxy.NewMaintenanceProxy(cli))
	p.served.Add(1)
	go func() {
		defer p.served.Done()
		p.server.Serve(ln)
	}()
	tb.Cleanup(p.stop)
	return p
}

// stop stops the proxy and deletes every key the test wrote.
func (p *namespaceProxy) stop() {
	p.server.Stop()
	p.served.Wait()
	p.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.raw.Delete(ctx, p.prefix, clientv3.WithPrefix())
	p.cli.Close()
	for _, done := range p.done {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}
}
