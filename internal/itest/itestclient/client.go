// Package itestclient gives integration tests an etcdv3 client that logs to
// the test log and is closed at cleanup. It is apart from package itest so
// that tests of the packages etcdv3 is built on can use itest.
package itestclient

import (
	"context"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
)

// New connects an etcdv3 client with 2 s dial and request timeouts
// (opts may change them) and closes it at cleanup. Cleanups run
// last-registered first, so a client made after its server closes before
// the server stops, and the server stops fast with no stream left open.
func New(t testing.TB, endpoints []string, opts ...func(*etcdv3.ClientOptions)) *etcdv3.EtcdClient {
	t.Helper()
	o := etcdv3.ClientOptions{DialTimeout: 2 * time.Second, RequestTimeout: 2 * time.Second, Logger: itest.Logger(t)}
	for _, f := range opts {
		f(&o)
	}
	c, err := etcdv3.NewEtcdClient(context.Background(), endpoints, o)
	if err != nil {
		t.Fatalf("new etcd client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
