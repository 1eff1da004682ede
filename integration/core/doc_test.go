// Package core tests etcdv3 and instance against a real embedded etcd:
// registration, discovery, leases, restarts, compaction and bad input.
package core
