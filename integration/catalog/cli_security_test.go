package catalog_test

import (
	"strings"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/etcdtest"
)

func TestCLIConnectsWithMutualTLS(t *testing.T) {
	certs := etcdtest.NewCerts(t)
	srv := etcdtest.NewServer(t, etcdtest.WithMutualTLS(certs))
	if srv.External() {
		t.Skip("needs an embedded etcd with TLS")
	}
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	tls := []string{"--cacert", certs.CA, "--cert", certs.ClientCert, "--key", certs.ClientKey}
	etcdsd(t, append([]string{"services", ep}, tls...)...).ok(t)
	etcdsd(t, "drain", "--force", "app", "a", ep, "--cacert", certs.CA, "--cert", certs.ClientCert, "--tls-key", certs.ClientKey).ok(t)
	// Before the command --key is the TLS key, even for register, whose
	// own --key is the etcd key.
	etcdsd(t, append(append([]string{ep}, tls...), "services")...).ok(t)
	reg := start(t, append(append([]string{ep}, tls...), "register", "--key", "/services/app/r", "--value", "10.0.0.1:80")...)
	reg.line(t, 5*time.Second, "registered /services/app/r")
	if code, _ := reg.interrupt(t); code != 0 {
		t.Fatalf("register with TLS flags before it: exit %d; stderr %s", code, reg.stderr)
	}
	r := etcdsd(t, "list", "app", ep, "--timeout", "1s")
	if r.code != 1 || !strings.Contains(r.stderr, "etcdsd list:") {
		t.Fatalf("without certificates: exit %d, stderr %q; want exit 1", r.code, r.stderr)
	}
	r = etcdsd(t, "list", "app", ep, "--cacert", certs.CA, "--cert", certs.ClientCert)
	if r.code != 2 || !strings.HasPrefix(r.stderr, "etcdsd list: --cert and --key (--tls-key) go together\n") {
		t.Fatalf("certificate without its key: exit %d, stderr %q; want exit 2", r.code, r.stderr)
	}
}

func TestCLIAuthenticatesWithUserAndPassword(t *testing.T) {
	srv := etcdtest.NewServer(t)
	srv.EnableAuth("ops", "s3cret", "/")
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	etcdsd(t, "drain", "--force", "app", "a", ep, "--user", "ops", "--password", "s3cret").ok(t)
	r := etcdsd(t, "list", "app*", ep, "--user", "ops", "--password", "s3cret", "-o", "json").ok(t)
	if strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("list as ops: %q", r.stdout)
	}
	r = etcdsd(t, "services", ep, "--user", "ops", "--password", "wrong")
	if r.code != 1 || !strings.Contains(r.stderr, `authentication failed for user "ops"`) || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("wrong password: exit %d, stderr %q; want exit 1 naming the user", r.code, r.stderr)
	}
}
