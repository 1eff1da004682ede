package outage

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// Timing of every test: an outage is noticed after dialTimeout, and no call
// may take longer than requestTimeout (plus slack for a loaded machine).
const (
	dialTimeout    = 500 * time.Millisecond
	requestTimeout = 2 * time.Second
	slack          = 500 * time.Millisecond
	ttl            = 2 * time.Second
	// converge bounds how long etcd takes to be back and a lease to expire
	// after a restart (a restarted etcd extends every lease by its TTL).
	converge = 15 * time.Second
)

// newServer starts an embedded etcd; these tests stop it, so they skip
// against an external one.
func newServer(t *testing.T) *etcdtest.Server {
	t.Helper()
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("stops etcd: needs the embedded server")
	}
	return srv
}

func newClient(t *testing.T, srv *etcdtest.Server) *etcdv3.EtcdClient {
	t.Helper()
	return itestclient.New(t, srv.Endpoints(), func(o *etcdv3.ClientOptions) {
		o.DialTimeout, o.RequestTimeout = dialTimeout, requestTimeout
	})
}

func service(key string) etcdv3.Service {
	return etcdv3.Service{Key: key, Value: "127.0.0.1:1", TTL: etcdv3.NewTTLOption(etcdv3.MinHeartbeat, ttl)}
}

// returnsWithin runs call and fails the test if it takes longer than limit;
// a call that hangs fails it too, 10 s later, instead of hanging the test.
func returnsWithin(t *testing.T, limit time.Duration, what string, call func()) {
	t.Helper()
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		call()
	}()
	select {
	case <-done:
	case <-time.After(limit + 10*time.Second):
		t.Fatalf("%s still blocked %v after etcd stopped", what, time.Since(start))
	}
	took := time.Since(start)
	t.Logf("%s returned in %v with etcd down", what, took.Round(time.Millisecond))
	if took > limit {
		t.Errorf("%s took %v with etcd down, want at most %v", what, took, limit)
	}
}

// staysAbsent fails the test if key exists at any time within d.
func staysAbsent(t *testing.T, admin *clientv3.Client, key string, d time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if itest.KeyExists(t, admin, key) {
			t.Fatalf("%s came back", key)
		}
	}
}

// restart starts etcd again and returns an admin client of it.
func restart(t *testing.T, srv *etcdtest.Server) *clientv3.Client {
	t.Helper()
	srv.Start()
	admin := srv.Client(t)
	itest.Eventually(t, converge, "etcd answers again", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := admin.Get(ctx, "/")
		return err == nil
	})
	return admin
}
