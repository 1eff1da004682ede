package console_test

import (
	"context"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/cmd/etcdsd/internal/console"
	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// The console says etcd cannot be read within 2 s of etcd going silent
// (a crashed host, a partition: connections stay open, nothing answers),
// and that it answers again soon after it is back, with the CLI's 5 s
// timeouts: its health is its own bounded probe's, not the watch's, which
// waits out the dial timeout before it reports.
func TestHealthTurnsFalseWithin2sOfEtcdGoingSilentAndBack(t *testing.T) {
	f, proxy := newProxiedFixture(t)
	base := f.httpServer(t).URL
	etcdOK := func() bool {
		var v console.Overview
		r := do(t, "GET", base+"/api/services", "")
		if r.code != 200 || !decode(t, r.body, &v) {
			t.Fatalf("GET /api/services: %d %s", r.code, r.body)
		}
		return v.Etcd.OK
	}
	if !etcdOK() {
		t.Fatal("etcd not ok before it stopped")
	}
	silent := time.Now()
	proxy.Blackhole()
	itest.Eventually(t, 2*time.Second, `/api/services says "etcd":{"ok":false} once etcd is silent`, func() bool { return !etcdOK() })
	t.Logf("etcd reported down %v after it went silent", time.Since(silent).Round(time.Millisecond))
	proxy.Unblackhole()
	back := time.Now()
	itest.Eventually(t, 5*time.Second, `/api/services says "etcd":{"ok":true} once etcd answers again`, etcdOK)
	t.Logf("etcd reported back %v after it answered again", time.Since(back).Round(time.Millisecond))
}

// newProxiedFixture is a read-only console as the CLI makes it (5 s dial
// and request timeouts) on an etcd it reaches through a proxy, which the
// test can make silent.
func newProxiedFixture(t *testing.T) (*fixture, *etcdtest.Proxy) {
	t.Helper()
	f := &fixture{etcd: etcdtest.NewServer(t)}
	proxy := etcdtest.NewProxy(t, f.etcd.Endpoints()[0])
	f.client = itestclient.New(t, []string{proxy.Endpoint()}, func(o *etcdv3.ClientOptions) {
		o.DialTimeout, o.RequestTimeout = 5*time.Second, 5*time.Second
	})
	cat, err := catalog.New(f.client, catalog.WithLogger(itest.Logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	f.cat = cat
	srv, err := console.New(context.Background(), console.Config{Catalog: cat, Client: f.client, RequestTimeout: 5 * time.Second, Endpoints: []string{proxy.Endpoint()}, Logger: itest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	f.srv = srv
	return f, proxy
}
