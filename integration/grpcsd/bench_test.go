package grpcsd

import (
	"context"
	"testing"

	"go.etcd.io/etcd/client/v3/naming/endpoints"
	etcdresolver "go.etcd.io/etcd/client/v3/naming/resolver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	gresolver "google.golang.org/grpc/resolver"

	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// BenchmarkUpdateLatency measures how long a change in etcd takes to reach
// the traffic: one op puts a key's new address (alternating between two
// live servers) and ends when an RPC on the ClientConn is answered by the
// server at that address. It compares etcdsd's resolver with etcd's own
// client/v3/naming/resolver (values written by naming/endpoints), on the
// same embedded etcd, with the same pick_first policy, in the same run.
func BenchmarkUpdateLatency(b *testing.B) {
	etcd := newEtcd(b)
	kv := etcd.Client(b)
	servers := []*server{startServer(b, "a"), startServer(b, "b")}
	ctx := context.Background()

	b.Run("resolver=etcdsd", func(b *testing.B) {
		builder := newBuilder(b, itestclient.New(b, etcd.Endpoints()))
		key := "/bench/etcdsd/app/x"
		set := func(s *server) error {
			_, err := kv.Put(ctx, key, s.value(b, "v1"))
			return err
		}
		benchUpdates(b, builder, "etcd:///bench/etcdsd/app/", servers, set)
	})

	b.Run("resolver=etcd-naming", func(b *testing.B) {
		cli := etcd.Client(b)
		builder, err := etcdresolver.NewBuilder(cli)
		if err != nil {
			b.Fatal(err)
		}
		em, err := endpoints.NewManager(kv, "bench/naming/app")
		if err != nil {
			b.Fatal(err)
		}
		set := func(s *server) error {
			return em.AddEndpoint(ctx, "bench/naming/app/x", endpoints.Endpoint{Addr: s.addr})
		}
		benchUpdates(b, builder, "etcd:///bench/naming/app", servers, set)
	})
}

// benchUpdates runs the measured loop: set moves the key to the other
// server; the op ends when an RPC is answered by it.
func benchUpdates(b *testing.B, builder gresolver.Builder, target string, servers []*server, set func(*server) error) {
	conn, err := grpc.NewClient(target, grpc.WithResolvers(builder), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	moveTo := func(s *server) {
		if err := set(s); err != nil {
			b.Fatal(err)
		}
		for {
			// Errors while the ClientConn switches are expected; retry.
			if name, err := call(ctx, conn, grpc.WaitForReady(true)); err == nil && name == s.name {
				return
			}
		}
	}
	moveTo(servers[0])
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		moveTo(servers[i%2])
	}
}
