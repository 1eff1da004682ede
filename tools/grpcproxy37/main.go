// Command grpcproxy37 is etcd 3.7's own command line, built from
// go.etcd.io/etcd/server/v3 v3.7 in a module of its own, so that .ci/run and
// BenchmarkFleet can put etcd 3.7's gRPC proxy in front of an etcd without
// an etcd 3.7 binary on the machine, and the main module gains no
// dependency:
//
//	grpcproxy37 grpc-proxy start --endpoints=127.0.0.1:2379 --listen-addr=127.0.0.1:23790
//
// Every other etcd subcommand and flag works too; only grpc-proxy is used.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
