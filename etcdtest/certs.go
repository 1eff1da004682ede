package etcdtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// Certs are the PEM files of a throwaway PKI, made for one test in its
// tb.TempDir: a CA, a server certificate for 127.0.0.1 and localhost, and a
// client certificate, both signed by the CA. Nothing is checked in; every
// call makes a new CA, so two Certs do not trust each other.
type Certs struct {
	CA         string // the CA certificate
	ServerCert string
	ServerKey  string
	ClientCert string
	ClientKey  string
}

// certValidity is long enough for any test, short enough to be useless
// if a file leaks.
const certValidity = 2 * time.Hour

// NewCerts generates a CA and a server and a client certificate signed by
// it (ECDSA P-256), and writes them to files in tb.TempDir.
func NewCerts(tb testing.TB) *Certs {
	tb.Helper()
	dir := tb.TempDir()
	ca, caKey, err := newCertificate(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "etcdtest CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, nil, nil)
	if err != nil {
		tb.Fatalf("etcdtest: new certs: CA: %v", err)
	}
	c := &Certs{CA: filepath.Join(dir, "ca.pem")}
	if err := writePEM(c.CA, "CERTIFICATE", ca.Raw); err != nil {
		tb.Fatalf("etcdtest: new certs: %v", err)
	}
	for _, leaf := range []struct {
		name      string
		template  *x509.Certificate
		cert, key *string
	}{
		{"server", &x509.Certificate{
			Subject:     pkix.Name{CommonName: "etcdtest server"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			DNSNames:    []string{"localhost"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}, &c.ServerCert, &c.ServerKey},
		{"client", &x509.Certificate{
			Subject:     pkix.Name{CommonName: "etcdtest client"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}, &c.ClientCert, &c.ClientKey},
	} {
		leaf.template.KeyUsage = x509.KeyUsageDigitalSignature
		cert, key, err := newCertificate(leaf.template, ca, caKey)
		if err != nil {
			tb.Fatalf("etcdtest: new certs: %s: %v", leaf.name, err)
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			tb.Fatalf("etcdtest: new certs: %s key: %v", leaf.name, err)
		}
		*leaf.cert = filepath.Join(dir, leaf.name+".pem")
		*leaf.key = filepath.Join(dir, leaf.name+"-key.pem")
		if err := writePEM(*leaf.cert, "CERTIFICATE", cert.Raw); err != nil {
			tb.Fatalf("etcdtest: new certs: %v", err)
		}
		if err := writePEM(*leaf.key, "EC PRIVATE KEY", der); err != nil {
			tb.Fatalf("etcdtest: new certs: %v", err)
		}
	}
	return c
}

// newCertificate makes a key and a certificate from template, signed by
// parent's key, or self-signed when parent is nil.
func newCertificate(template, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	template.SerialNumber = serial
	template.NotBefore = time.Now().Add(-time.Minute)
	template.NotAfter = time.Now().Add(certValidity)
	if parent == nil {
		parent, parentKey = template, key
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}

// WithMutualTLS makes etcd serve clients over TLS with certs' server
// certificate and accept only clients that present a certificate signed by
// certs' CA. The client URLs switch to https.
func WithMutualTLS(certs *Certs) Option {
	return WithConfig(func(cfg *embed.Config) {
		cfg.ClientTLSInfo = transport.TLSInfo{
			CertFile:       certs.ServerCert,
			KeyFile:        certs.ServerKey,
			TrustedCAFile:  certs.CA,
			ClientCertAuth: true,
		}
	})
}

// ClientTLS returns a client TLS configuration that trusts the CA and
// presents the client certificate, for clientv3.Config.TLS.
func (c *Certs) ClientTLS(tb testing.TB) *tls.Config {
	tb.Helper()
	pair, err := tls.LoadX509KeyPair(c.ClientCert, c.ClientKey)
	if err != nil {
		tb.Fatalf("etcdtest: client TLS: %v", err)
	}
	caPEM, err := os.ReadFile(c.CA)
	if err != nil {
		tb.Fatalf("etcdtest: client TLS: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		tb.Fatalf("etcdtest: client TLS: %s holds no certificate", c.CA)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}
}
