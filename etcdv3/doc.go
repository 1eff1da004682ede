// Package etcdv3 provides service discovery on etcd v3 for go-kit: a
// Registrar that keeps a service's key alive, and an Instancer that mirrors
// a key prefix and feeds go-kit endpointers. It is a drop-in for go-kit's
// sd/etcdv3 — change the import path, keep the code — that stays correct
// when etcd restarts, a leader dies, the network drops, a lease expires or
// history is compacted.
//
// What it does beyond go-kit's package:
//
//   - Registration: services of one Client with the same TTL share one lease
//     (one keepalive for a thousand services); each stays alive on its own
//     until its own Deregister. A lost lease (expired during a partition,
//     revoked, lost in a restore) is granted again and every key put back,
//     with capped exponential backoff and jitter. Registrar.Status tells how
//     it is going; RegisterContext returns the error.
//   - Discovery: the Instancer reads a snapshot at revision R, watches from
//     R+1 and applies each change by key, sending one coalesced sd.Event per
//     watch response. After compaction or an outage it reads a fresh
//     snapshot and reports the net difference (changes made and undone
//     while cut off are not replayed); while etcd is unreachable,
//     subscribers get one sd.Event with Err and keep their instances. A
//     subscriber that does not read never holds up the others. The
//     Instancers of one client and prefix share one watch of the prefix,
//     one of its properties and one sd.Event list, built once per change.
//   - Operator controls: an instance drained with the etcdsd CLI (or package
//     catalog) leaves the Instancer's events within one watch event, and a
//     weight override reaches etcdsd's endpointer and gRPC balancer as the
//     typed weight; the value a go-kit factory receives never changes.
//   - Input: empty or malformed keys and prefixes, bad TLS files, wrong
//     credentials and unreachable endpoints give errors naming the bad
//     value. Empty keys and values give go-kit's bare ErrNoKey and
//     ErrNoValue, and NewTTLOption repairs a TTL <= heartbeat as go-kit's
//     does, with a warning at Register naming both values.
//   - No call blocks while etcd is down: as go-kit's, NewClient is lazy (a
//     service may start before etcd; grpc.WithBlock() in DialOptions makes
//     it fail fast), and every call that waits on etcd — Register,
//     Deregister, their Context variants, GetEntries, Instancer.Stop,
//     Close — returns within the request timeout or its context, and
//     within the dial timeout once etcd is unreachable, naming the
//     endpoints. A key deregistered during an outage never comes back.
//
// The fast path, a read at a revision and a watch from the next one, and
// the operator's properties are for the *EtcdClient that NewClient
// returns; any other Client, such as a test fake that implements only the
// five methods, still works with NewRegistrar and NewInstancer, through
// GetEntries and WatchPrefix, without properties (it has no keys to match
// them with).
//
// A client's goroutines end with Close (or when the context given to
// NewClient ends); an Instancer's with Stop.
//
// The runnable examples, which start a real (embedded) etcd, are in the
// repository's integration module: integration/examples/etcdv3.
package etcdv3
