// Package grpcsd connects gRPC clients to services registered in etcd: a
// resolver.Builder that follows a key prefix and gives gRPC every instance
// with its version, id, weight and metadata; a balancer that routes each RPC
// to the instances of the version its context asks for; and a Pool that keeps
// one lazily connecting *grpc.ClientConn per etcd key.
//
// The resolver is built on an Instancer of package etcdv3 (snapshot and watch
// from one revision, resumed after outages): while etcd is unreachable it
// reports the error to gRPC and keeps the last addresses, and it sends the
// true state again on its own when etcd is back. Closing the ClientConn stops
// its watch. Nothing is registered globally unless you call Register. The
// target's path is a directory: "etcd:///services/app" follows
// "/services/app/", never the siblings "/services/apple/" or
// "/services/app-canary/".
//
//	b, _ := grpcsd.NewBuilder(client)
//	conn, _ := grpc.NewClient("etcd:///services/app/",
//		grpc.WithResolvers(b),
//		grpc.WithDefaultServiceConfig(grpcsd.VersionServiceConfig),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
//	reply, err := pb.NewAppClient(conn).Get(grpcsd.WithVersion(ctx, "v2"), req)
//
// The version balancer, registered as "etcdsd_version" when the package is
// imported, reads the version from WithVersion or, across processes, from
// the outgoing gRPC metadata key "x-etcdsd-version" (MetadataKey). It picks
// among the READY connections of that version, weighted round robin by each
// instance's weight (an operator's set-weight override included), and fails
// with codes.Unavailable, naming the wanted and the available versions, when
// no instance has it (one with grpc.WaitForReady(true) waits for the
// version's first instance). An RPC without a version uses every READY
// connection.
// While no instance is known at all, RPCs fail with codes.Unavailable, and
// those with grpc.WaitForReady(true) wait for one.
package grpcsd
