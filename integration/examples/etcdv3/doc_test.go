// Package etcdv3_test holds etcdv3's runnable examples that start a real
// (embedded) etcd: they live in the integration module, so that the
// library's go.mod does not list the etcd server for its tests.
package etcdv3_test
