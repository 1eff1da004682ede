//lint:file-ignore SA1019 go-kit programs pass grpc.WithBlock to make NewClient fail fast; these tests check it does

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

	"github.com/go-kit/log"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

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
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := etcdv3.NewRegistrar(c, tc.service, itest.Logger(t)).RegisterContext(ctx)
			if err == nil {
				t.Fatal("RegisterContext succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %q", err, tc.want)
			}
			if !errors.Is(err, tc.is) {
				t.Fatalf("error %q is not %v", err, tc.is)
			}
			if (tc.is == etcdv3.ErrNoKey || tc.is == etcdv3.ErrNoValue) && err != tc.is {
				t.Fatalf("error %q is wrapped; go-kit returns %v bare", err, tc.is)
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

func TestRepairedTTLOptionRegistersWithGoKitsValuesAndAWarning(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints())
	var logged strings.Builder
	r := etcdv3.NewRegistrar(c, etcdv3.Service{Key: "/s/a", Value: "x:1", TTL: etcdv3.NewTTLOption(3*time.Second, time.Second)}, log.NewLogfmtLogger(&logged))
	if err := r.RegisterContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Deregister()
	for _, want := range []string{"level=warn", "heartbeat_given=3s", "ttl_given=1s", "ttl=9s"} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log %q lacks %q", logged.String(), want)
		}
	}
	ttl, err := srv.Client(t).TimeToLive(context.Background(), clientv3.LeaseID(r.Status().LeaseID))
	if err != nil {
		t.Fatal(err)
	}
	if ttl.GrantedTTL != 9 {
		t.Fatalf("lease granted for %d s, want 9 (3 heartbeats, as go-kit repairs a TTL of 1s)", ttl.GrantedTTL)
	}
}

// A TTLOption made without NewTTLOption, which go-kit accepts, is
// repaired as NewTTLOption repairs it: the key is kept alive, with a
// warning naming the values given and used.
func TestZeroTTLOptionIsRepairedAsNewTTLOptionWithAWarning(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints())
	admin := srv.Client(t)
	const key = "/s/zero-ttl"
	var logged itest.Buffer
	r := etcdv3.NewRegistrar(c, etcdv3.Service{Key: key, Value: "x:1", TTL: &etcdv3.TTLOption{}}, log.NewLogfmtLogger(&logged))
	if err := r.RegisterContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Deregister()
	want := "heartbeat_given=0s ttl_given=0s heartbeat=500ms ttl=1.5s"
	if got := logged.String(); strings.Count(got, "level=warn") != 1 || !strings.Contains(got, want) {
		t.Fatalf("log %q, want one warning with %q", got, want)
	}
	ttl, err := admin.TimeToLive(context.Background(), clientv3.LeaseID(r.Status().LeaseID))
	if err != nil {
		t.Fatal(err)
	}
	if ttl.GrantedTTL != 2 {
		t.Fatalf("lease granted for %d s, want 2 (1.5 s rounded up)", ttl.GrantedTTL)
	}
	// Kept alive past two lease TTLs.
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if !itest.KeyExists(t, admin, key) {
			t.Fatal("key expired: not kept alive")
		}
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestNewClientIsLazyAndFirstUseFailsWithinDialTimeoutNamingTheEndpoint(t *testing.T) {
	addr := closedPort(t)
	const dialTimeout = 500 * time.Millisecond
	start := time.Now()
	c, err := etcdv3.NewEtcdClient(context.Background(), []string{addr}, etcdv3.ClientOptions{DialTimeout: dialTimeout})
	if err != nil {
		t.Fatalf("NewClient with etcd down: %v; go-kit's client is lazy", err)
	}
	defer c.Close()
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Fatalf("NewClient took %v; a lazy client returns at once", took)
	}
	for name, call := range map[string]func() error{
		"GetEntries": func() error { _, err := c.GetEntries("/s/"); return err },
		"Register":   func() error { return c.Register(etcdv3.Service{Key: "/s/a", Value: "x:1"}) },
		"Deregister": func() error { return c.Deregister(etcdv3.Service{Key: "/s/a"}) },
	} {
		start := time.Now()
		err := call()
		took := time.Since(start)
		if err == nil {
			t.Fatalf("%s with etcd down succeeded", name)
		}
		if !strings.Contains(err.Error(), addr) || !errors.Is(err, etcdv3.ErrUnreachable) {
			t.Errorf("%s error %q does not name the endpoint or wrap ErrUnreachable", name, err)
		}
		if took > dialTimeout+time.Second {
			t.Errorf("%s took %v, want at most about the dial timeout %v", name, took, dialTimeout)
		}
	}
}

func TestNewClientWithBlockFailsWithinDialTimeoutNamingTheEndpoint(t *testing.T) {
	addr := closedPort(t)
	const dialTimeout = 500 * time.Millisecond
	for name, opt := range map[string]grpc.DialOption{"WithBlock": grpc.WithBlock(), "WithReturnConnectionError": grpc.WithReturnConnectionError()} {
		start := time.Now()
		c, err := etcdv3.NewClient(context.Background(), []string{addr}, etcdv3.ClientOptions{DialTimeout: dialTimeout, DialOptions: []grpc.DialOption{grpc.WithUserAgent("test"), opt}})
		took := time.Since(start)
		if err == nil {
			c.(*etcdv3.EtcdClient).Close()
			t.Fatalf("NewClient with %s to a closed port succeeded", name)
		}
		if c != nil {
			t.Errorf("NewClient with %s returned a client with its error", name)
		}
		if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "500ms") {
			t.Fatalf("error %q does not name the endpoint and the timeout", err)
		}
		if took > dialTimeout+time.Second {
			t.Fatalf("NewClient took %v, want about the dial timeout %v", took, dialTimeout)
		}
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
