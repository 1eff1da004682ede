//lint:file-ignore SA1019 go-kit programs pass grpc.WithBlock to make NewClient fail fast; these tests check it does

package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
)

// tlsServer is an etcd that serves only clients with a certificate of its
// CA, and a fleet whose truth client has one.
func tlsServer(t *testing.T, prefix string) (*etcdtest.Server, *etcdtest.Certs, *fleet, *logTail) {
	certs := etcdtest.NewCerts(t)
	srv := etcdtest.NewServer(t, etcdtest.WithMutualTLS(certs))
	if srv.External() {
		t.Skip("TLS needs an embedded etcd")
	}
	truth, err := clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second, TLS: certs.ClientTLS(t), Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { truth.Close() })
	logs := newLogTail(t)
	return srv, certs, newFleet(t, prefix, truth, logs), logs
}

func TestMutualTLSRegistersAndWatches(t *testing.T) {
	srv, certs, f, logs := tlsServer(t, "/faults/tls/")
	c := newClient(t, logs, srv.Endpoints(), func(o *etcdv3.ClientOptions) {
		o.Cert, o.Key, o.CACert = certs.ClientCert, certs.ClientKey, certs.CA
	})
	f.watch("mutual TLS", c)
	for i := range 3 {
		f.register(c, fmt.Sprint(i))
	}
	f.mustCheck("registered over mutual TLS")
}

func TestMutualTLSUntrustedCertificatesFailClearly(t *testing.T) {
	srv, certs, _, logs := tlsServer(t, "/faults/tls-untrusted/")
	other := etcdtest.NewCerts(t)
	for _, tc := range []struct {
		name          string
		cert, key, ca string
		want1, want2  string
	}{
		{"server certificate of an untrusted CA", certs.ClientCert, certs.ClientKey, other.CA, "certificate", "unknown authority"},
		{"client certificate of an untrusted CA", other.ClientCert, other.ClientKey, certs.CA, "certificate", "unknown certificate authority"},
	} {
		opts := etcdv3.ClientOptions{DialTimeout: dialTimeout, Cert: tc.cert, Key: tc.key, CACert: tc.ca, Logger: logs}
		check := func(t *testing.T, what string, took time.Duration, err error) {
			t.Helper()
			if err == nil {
				t.Fatalf("%s succeeded", what)
			}
			t.Logf("%s error: %v", what, err)
			if !strings.Contains(err.Error(), tc.want1) || !strings.Contains(err.Error(), tc.want2) {
				t.Fatalf("%s: err = %v; want it to name the problem (%q, %q)", what, err, tc.want1, tc.want2)
			}
			if took > 2*dialTimeout {
				t.Fatalf("%s took %v to fail, want within the dial timeout %v", what, took, dialTimeout)
			}
		}
		t.Run(tc.name+"/first use of a lazy client", func(t *testing.T) {
			c, err := etcdv3.NewEtcdClient(context.Background(), srv.Endpoints(), opts)
			if err != nil {
				t.Fatalf("NewClient: %v; it is lazy", err)
			}
			defer c.Close()
			start := time.Now()
			_, err = c.GetEntries("/faults/tls-untrusted/")
			check(t, "GetEntries", time.Since(start), err)
		})
		t.Run(tc.name+"/NewClient with grpc.WithBlock", func(t *testing.T) {
			opts := opts
			opts.DialOptions = []grpc.DialOption{grpc.WithBlock()}
			start := time.Now()
			_, err := etcdv3.NewClient(context.Background(), srv.Endpoints(), opts)
			check(t, "NewClient", time.Since(start), err)
		})
	}
}
