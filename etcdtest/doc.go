// Package etcdtest runs a real etcd for tests, as net/http/httptest runs a
// real HTTP server: one member or a cluster embedded on free loopback ports,
// a member in a child process to kill -9, and a proxy that breaks the network.
//
// NewServer and NewCluster embed etcd (go.etcd.io/etcd/server/v3/embed) in
// the test process with data in tb.TempDir, tuned for tests: a 10 ms
// heartbeat and 100 ms election timeout elect a leader in milliseconds, and
// fsync is off. StartProcess runs a member in the test binary started again
// as a child, which needs one line in TestMain (see RunServerIfChild);
// StartProcessCluster runs several such members as one cluster.
// NewProxy sits between clients and etcd and drops, holds or delays traffic,
// or cuts connections. Everything stops when the test ends.
//
// etcd's log is kept quiet: errors and worse are shown with the test's
// output, and only if the test fails.
//
// Stopping an embedded member takes milliseconds, with two exceptions worth
// a test's time budget: while clients hold watch or lease keepalive streams,
// etcd waits up to about 5 s for them, so close clients first where the
// test allows; and a member of a running cluster waits up to 1 s for its
// peers' connections.
//
// Set ETCD_ENDPOINTS=host:port,... to run the same tests against an
// external etcd: NewServer then starts no etcd, and gives each test a
// keyspace of its own in the shared one, through a loopback namespace
// proxy (etcd's grpcproxy) that prefixes every key and deletes the test's
// keys when it ends; tests that stop or start members skip.
package etcdtest
