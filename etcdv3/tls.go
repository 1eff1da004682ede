package etcdv3

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
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
