package etcdv3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"
)

// tlsConfig builds the TLS configuration from the options, checking each
// file so that the error names the one that is missing or bad.
func tlsConfig(o ClientOptions) (*tls.Config, error) {
	if o.TLS != nil {
		return o.TLS.Clone(), nil
	}
	if o.Cert == "" && o.Key == "" && o.CACert == "" {
		return nil, nil
	}
	if (o.Cert == "") != (o.Key == "") {
		return nil, fmt.Errorf("etcdv3: TLS: Cert (%q) and Key (%q) must be set together", o.Cert, o.Key)
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.Cert != "" {
		if err := readable("Cert", o.Cert); err != nil {
			return nil, err
		}
		if err := readable("Key", o.Key); err != nil {
			return nil, err
		}
		pair, err := tls.LoadX509KeyPair(o.Cert, o.Key)
		if err != nil {
			return nil, fmt.Errorf("etcdv3: TLS: load key pair Cert %q, Key %q: %w", o.Cert, o.Key, err)
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	if o.CACert != "" {
		pem, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, fmt.Errorf("etcdv3: TLS: read CACert %q: %w", o.CACert, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcdv3: TLS: CACert %q holds no PEM certificate", o.CACert)
		}
		conf.RootCAs = pool
	}
	return conf, nil
}

func readable(field, path string) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("etcdv3: TLS: %s file %q does not exist: %w", field, path, err)
		}
		return fmt.Errorf("etcdv3: TLS: %s file %q: %w", field, path, err)
	}
	return f.Close()
}

// tlsProblem tells why etcd does not answer over TLS, when it is because of
// TLS: clientv3 reports only that no endpoint answered in time. It shakes
// hands with the first endpoint, within min(DialTimeout/2, 1 s), and
// returns the handshake's error (an untrusted server certificate) or the
// server's alert (a client certificate it does not trust), or nil when TLS
// is not used or is not the problem.
func tlsProblem(machines []string, o ClientOptions) error {
	conf, err := tlsConfig(o)
	if err != nil || conf == nil || len(machines) == 0 {
		return nil
	}
	host := machines[0]
	if u, err := url.Parse(host); err == nil && u.Host != "" {
		host = u.Host
	}
	if conf.ServerName == "" {
		conf.ServerName, _, _ = net.SplitHostPort(host)
	}
	conf.NextProtos = []string{"h2"}
	budget := min(o.DialTimeout/2, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	d := tls.Dialer{Config: conf}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return tlsError(fmt.Sprintf("TLS handshake with %s", host), err)
	}
	defer conn.Close()
	// With TLS 1.3 the server checks the client's certificate after the
	// client has finished its handshake: its verdict is the first read.
	conn.SetReadDeadline(time.Now().Add(budget))
	_, err = conn.Read(make([]byte, 1))
	return tlsError(fmt.Sprintf("TLS handshake with %s", host), err)
}

// tlsError returns err, prefixed with what, if it is a TLS failure.
func tlsError(what string, err error) error {
	var verify *tls.CertificateVerificationError
	var record tls.RecordHeaderError
	var op *net.OpError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &verify), errors.As(err, &record):
	case errors.As(err, &op) && op.Op == "remote error":
		// An alert from the server, e.g. "tls: unknown certificate authority".
	default:
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}
