package core

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

func TestBadInputGivesErrorsNamingTheValue(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints())
	ctx := context.Background()

	for _, tc := range []struct {
		name    string
		service etcdv3.Service
		want    string
		is      error
	}{
		{"empty key", etcdv3.Service{Value: "x:1"}, "no key", etcdv3.ErrNoKey},
		{"empty value", etcdv3.Service{Key: "/s/a"}, "no value", etcdv3.ErrNoValue},
		{"key with control characters", etcdv3.Service{Key: "/s/a\n", Value: "x:1"}, `"/s/a\n"`, etcdv3.ErrMalformedKey},
		{"key with trailing space", etcdv3.Service{Key: "/s/a ", Value: "x:1"}, `"/s/a "`, etcdv3.ErrMalformedKey},
		{"TTL equal to heartbeat", etcdv3.Service{Key: "/s/a", Value: "x:1", TTL: etcdv3.NewTTLOption(3*time.Second, 3*time.Second)}, "TTL 3s must be greater than heartbeat 3s", nil},
		{"TTL below heartbeat", etcdv3.Service{Key: "/s/a", Value: "x:1", TTL: etcdv3.NewTTLOption(3*time.Second, time.Second)}, "TTL 1s must be greater than heartbeat 3s", nil},
		{"zero heartbeat", etcdv3.Service{Key: "/s/a", Value: "x:1", TTL: etcdv3.NewTTLOption(0, time.Second)}, "heartbeat 0s must be positive", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := etcdv3.NewRegistrar(c, tc.service, itest.Logger(t)).RegisterContext(ctx)
			if err == nil {
				t.Fatal("RegisterContext succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("error %q is not %v", err, tc.is)
			}
			// The go-kit style methods log instead, and must not panic or hang.
			r := etcdv3.NewRegistrar(c, tc.service, itest.Logger(t))
			r.Register()
			r.Deregister()
		})
	}

	for _, prefix := range []string{"", " /s/", "/s/\x00", "\xff/s/"} {
		if _, err := etcdv3.NewInstancer(c, prefix, itest.Logger(t)); err == nil {
			t.Errorf("NewInstancer(%q) succeeded", prefix)
		} else if !strings.Contains(err.Error(), strconv.Quote(prefix)) {
			t.Errorf("NewInstancer(%q) error %q does not name the prefix", prefix, err)
		}
	}
	if _, err := c.GetEntries(""); !errors.Is(err, etcdv3.ErrNoPrefix) {
		t.Errorf("GetEntries(\"\") error = %v, want ErrNoPrefix", err)
	}
}

func TestUnreachableEndpointFailsWithinDialTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	const dialTimeout = 500 * time.Millisecond
	start := time.Now()
	_, err = etcdv3.NewClient(context.Background(), []string{addr}, etcdv3.ClientOptions{DialTimeout: dialTimeout})
	took := time.Since(start)
	if err == nil {
		t.Fatal("NewClient to a closed port succeeded")
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "500ms") {
		t.Fatalf("error %q does not name the endpoint and the timeout", err)
	}
	if took > dialTimeout+time.Second {
		t.Fatalf("NewClient took %v, want about the dial timeout %v", took, dialTimeout)
	}
}

func TestBadClientOptionsAreRefusedNamingTheValue(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name      string
		endpoints []string
		opts      etcdv3.ClientOptions
		want      string
	}{
		{"no endpoints", nil, etcdv3.ClientOptions{}, "no etcd endpoints"},
		{"blank endpoint", []string{" "}, etcdv3.ClientOptions{}, `malformed endpoint " "`},
		{"missing cert file", []string{"127.0.0.1:1"}, etcdv3.ClientOptions{Cert: missing, Key: missing}, missing},
		{"cert without key", []string{"127.0.0.1:1"}, etcdv3.ClientOptions{Cert: missing}, "must be set together"},
		{"missing CA file", []string{"127.0.0.1:1"}, etcdv3.ClientOptions{CACert: missing}, missing},
		{"CA file without a certificate", []string{"127.0.0.1:1"}, etcdv3.ClientOptions{CACert: notPEM}, notPEM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := etcdv3.NewClient(context.Background(), tc.endpoints, tc.opts)
			if err == nil {
				t.Fatal("NewClient succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %q", err, tc.want)
			}
		})
	}
}
