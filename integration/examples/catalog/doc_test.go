// Package catalog_test holds catalog's runnable examples that start a real
// (embedded) etcd: they live in the integration module, so that the
// library's go.mod does not list the etcd server for its tests.
package catalog_test
