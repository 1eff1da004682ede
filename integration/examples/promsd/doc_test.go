// Package promsd_test holds promsd's runnable example that starts a real
// (embedded) etcd: it lives in the integration module, so that promsd's
// go.mod does not list the etcd server for its tests.
package promsd_test
