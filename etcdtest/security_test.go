package etcdtest_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdsd/etcdsd/etcdtest"
)

func TestMutualTLSAcceptsOnlyClientsOfItsCA(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	srv := etcdtest.NewServer(t, etcdtest.WithMutualTLS(certs))
	if srv.External() {
		t.Skip("options apply to an embedded etcd only")
	}
	if eps := srv.Endpoints(); len(eps) != 1 || !strings.HasPrefix(eps[0], "https://") {
		t.Fatalf("Endpoints() = %v, want one https endpoint", eps)
	}
	dial := func(conf *tls.Config) error {
		cli, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 2 * time.Second, TLS: conf, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer cli.Close()
		return getWithin(cli, 2*time.Second)
	}
	if err := dial(certs.ClientTLS(t)); err != nil {
		t.Fatalf("client of the CA: %v", err)
	}
	stranger := etcdtest.NewCerts(t).ClientTLS(t)
	if err := dial(stranger); err == nil {
		t.Fatal("a client whose certificates come from another CA was served")
	}
	noCert := certs.ClientTLS(t)
	noCert.Certificates = nil
	if err := dial(noCert); err == nil {
		t.Fatal("a client without a certificate was served")
	}
}

func TestEnableAuthLimitsUserToPrefix(t *testing.T) {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("auth needs an embedded etcd")
	}
	root := srv.EnableAuth("app", "secret", "/app/")
	user, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 2 * time.Second, Username: "app", Password: "secret", Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close()
	put(t, user, "/app/a", "v")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := user.Put(ctx, "/other/a", "v"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("put outside the prefix: err = %v, want %v", err, rpctypes.ErrPermissionDenied)
	}
	if _, err := root.Put(ctx, "/other/a", "v"); err != nil {
		t.Fatalf("root put: %v", err)
	}
	_, err = clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 2 * time.Second, Username: "app", Password: "wrong", Logger: zap.NewNop()})
	if !errors.Is(err, rpctypes.ErrAuthFailed) {
		t.Fatalf("wrong password: err = %v, want %v", err, rpctypes.ErrAuthFailed)
	}
}

func TestClusterStopsAndStartsAsAWhole(t *testing.T) {
	c := etcdtest.NewCluster(t, 3)
	cli := c.Client(t)
	put(t, cli, "/etcdtest/whole", "kept")
	c.Stop()
	for i := range 3 {
		if c.Member(i).Running() {
			t.Fatalf("member %d Running after Stop", i)
		}
	}
	c.Start()
	wantValue(t, cli, "/etcdtest/whole", "kept")
}
