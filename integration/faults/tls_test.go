package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

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
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := etcdv3.NewClient(context.Background(), srv.Endpoints(), etcdv3.ClientOptions{
				DialTimeout: dialTimeout, Cert: tc.cert, Key: tc.key, CACert: tc.ca, Logger: logs,
			})
			took := time.Since(start)
			if err == nil {
				t.Fatal("NewClient succeeded")
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), tc.want1) || !strings.Contains(err.Error(), tc.want2) {
				t.Fatalf("err = %v; want it to name the problem (%q, %q)", err, tc.want1, tc.want2)
			}
			if took > 2*dialTimeout {
				t.Fatalf("NewClient took %v to fail, want within the dial timeout %v", took, dialTimeout)
			}
		})
	}
}
