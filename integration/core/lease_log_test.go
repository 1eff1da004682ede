package core

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/go-kit/log"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
)

// A lease is logged as etcdctl prints it, 16 hex digits ("lease
// 694d7a1b2c3d4e5f granted"), at register and in the keepalive's
// warnings alike, so that one grep finds it in both and in etcdctl.
func TestLeaseIsLoggedInHexAsEtcdctlPrintsIt(t *testing.T) {
	srv := etcdtest.NewServer(t)
	raw := srv.Client(t)
	var buf itest.Buffer
	logger := log.NewLogfmtLogger(log.NewSyncWriter(&buf))
	c, err := etcdv3.NewEtcdClient(context.Background(), srv.Endpoints(), etcdv3.ClientOptions{DialTimeout: 2 * time.Second, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := etcdv3.NewRegistrar(c, etcdv3.Service{Key: "/services/app/1", Value: "10.0.0.1:80", TTL: etcdv3.NewTTLOption(time.Second, 3*time.Second)}, logger)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.RegisterContext(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Deregister()
	first := r.Status().LeaseID
	if _, err := raw.Revoke(ctx, clientv3.LeaseID(first)); err != nil {
		t.Fatal(err)
	}
	itest.Eventually(t, 5*time.Second, "registered again on a new lease", func() bool {
		return regexp.MustCompile(`registered again`).MatchString(buf.String())
	})
	leases := regexp.MustCompile(`\blease=(\S+)`).FindAllStringSubmatch(buf.String(), -1)
	if len(leases) < 2 {
		t.Fatalf("want the lease at register and in the warnings, got:\n%s", buf.String())
	}
	if want := fmt.Sprintf("%016x", first); leases[0][1] != want {
		t.Errorf("register logged lease=%s, want %s (etcdctl's %%016x):\n%s", leases[0][1], want, buf.String())
	}
	for _, l := range leases {
		if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(l[1]) {
			t.Errorf("lease=%s is not 16 hex digits:\n%s", l[1], buf.String())
		}
	}
}
