package etcdtest_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/etcdsd/etcdsd/etcdtest"
)

func TestMain(m *testing.M) { etcdtest.VerifyTestMain(m) }

// eventually calls f until it succeeds or timeout passes, and fails the
// test with f's last error then. f bounds its own wait with ctx.
func eventually(t *testing.T, timeout time.Duration, f func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := f(ctx)
		if err == nil {
			cancel()
			return
		}
		<-ctx.Done() // pace the retries when f fails at once
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", timeout, err)
		}
	}
}

// getValue returns the value of key, or an error if it is missing.
func getValue(ctx context.Context, cli *clientv3.Client, key string) (string, error) {
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) == 0 {
		return "", errors.New("key " + key + " not found")
	}
	return string(resp.Kvs[0].Value), nil
}

func put(t *testing.T, cli *clientv3.Client, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, value); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// wantValue waits until key reads as want through cli.
func wantValue(t *testing.T, cli *clientv3.Client, key, want string) {
	t.Helper()
	eventually(t, 10*time.Second, func(ctx context.Context) error {
		got, err := getValue(ctx, cli, key)
		if err == nil && got != want {
			t.Fatalf("get %s = %q, want %q", key, got, want)
		}
		return err
	})
}

func TestServerPutGet(t *testing.T) {
	srv := etcdtest.NewServer(t)
	cli := srv.Client(t)
	put(t, cli, "/etcdtest/put-get", "v1")
	wantValue(t, cli, "/etcdtest/put-get", "v1")
}

func TestServerRestartKeepsDataAndPorts(t *testing.T) {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("restarts need an embedded etcd")
	}
	cli := srv.Client(t)
	endpoints := srv.Endpoints()
	put(t, cli, "/etcdtest/restart", "kept")

	srv.Stop()
	if srv.Running() {
		t.Fatal("Running after Stop")
	}
	srv.Stop() // idempotent
	srv.Start()
	if !srv.Running() {
		t.Fatal("not Running after Start")
	}
	if got := srv.Endpoints(); !slices.Equal(got, endpoints) {
		t.Fatalf("endpoints after restart = %v, want %v", got, endpoints)
	}
	// The client from before the restart reconnects to the same port.
	wantValue(t, cli, "/etcdtest/restart", "kept")

	srv.Restart()
	wantValue(t, cli, "/etcdtest/restart", "kept")
}

func TestServerUsesEnvEndpointsInANamespaceOfItsOwn(t *testing.T) {
	shared := etcdtest.NewServer(t) // stands for the external etcd
	raw := shared.Client(t)
	t.Setenv(etcdtest.EnvEndpoints, strings.Join(shared.Endpoints(), ", "))

	var prefix string
	t.Run("test", func(t *testing.T) {
		srv := etcdtest.NewServer(t)
		if !srv.External() || !srv.Running() {
			t.Fatalf("External() = %v, Running() = %v; want both true", srv.External(), srv.Running())
		}
		if slices.Equal(srv.Endpoints(), shared.Endpoints()) {
			t.Fatalf("Endpoints() = %v, want the test's namespace proxy", srv.Endpoints())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := srv.Client(t).Put(ctx, "/services/a", "1"); err != nil {
			t.Fatal(err)
		}
		// The shared etcd holds the key under the test's own prefix.
		resp, err := raw.Get(ctx, "/etcdtest/", clientv3.WithPrefix())
		if err != nil || len(resp.Kvs) != 1 || !strings.HasSuffix(string(resp.Kvs[0].Key), "/services/a") {
			t.Fatalf("shared etcd holds %v, %v; want one key ending in /services/a", resp.Kvs, err)
		}
		prefix = strings.TrimSuffix(string(resp.Kvs[0].Key), "services/a")
		for name, op := range map[string]func(*etcdtest.Server){
			"Stop":    (*etcdtest.Server).Stop,
			"Start":   (*etcdtest.Server).Start,
			"Restart": (*etcdtest.Server).Restart,
		} {
			var skipped bool
			t.Run(name, func(t *testing.T) {
				defer func() { skipped = t.Skipped() }()
				op(etcdtest.NewServer(t))
			})
			if !skipped {
				t.Errorf("%s on an external server did not skip", name)
			}
		}
	})
	// Its keys are gone once the test ended.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := raw.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
		t.Fatalf("after the test, %q holds %d keys (err %v), want 0", prefix, resp.Count, err)
	}
}

func TestWithConfigAppliesOnEveryStart(t *testing.T) {
	srv := etcdtest.NewServer(t, etcdtest.WithConfig(func(cfg *embed.Config) {
		cfg.MaxRequestBytes = 1024
	}))
	if srv.External() {
		t.Skip("options apply to an embedded etcd only")
	}
	cli := srv.Client(t)
	big := strings.Repeat("x", 2048)
	for _, when := range []string{"first start", "restart"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cli.Put(ctx, "/etcdtest/big", big)
		cancel()
		if !errors.Is(err, rpctypes.ErrRequestTooLarge) {
			t.Fatalf("put of %d bytes after %s: err = %v, want %v", len(big), when, err, rpctypes.ErrRequestTooLarge)
		}
		srv.Restart()
	}
}

func TestWithConfigClientTLSUsesHTTPS(t *testing.T) {
	srv := etcdtest.NewServer(t, etcdtest.WithConfig(func(cfg *embed.Config) {
		cfg.ClientAutoTLS = true
	}))
	if srv.External() {
		t.Skip("options apply to an embedded etcd only")
	}
	eps := srv.Endpoints()
	if len(eps) != 1 || !strings.HasPrefix(eps[0], "https://127.0.0.1:") {
		t.Fatalf("Endpoints() = %v, want one https://127.0.0.1:PORT", eps)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   eps,
		DialTimeout: 5 * time.Second,
		// ClientAutoTLS makes a self-signed certificate.
		TLS: &tls.Config{InsecureSkipVerify: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	put(t, cli, "/etcdtest/tls", "v")
}

func TestClusterElectsNewLeaderAndRejoinsMember(t *testing.T) {
	c := etcdtest.NewCluster(t, 3)
	cli := c.Client(t)
	put(t, cli, "/etcdtest/cluster", "before")

	old := c.Leader()
	c.StopMember(old)
	if c.Member(old).Running() {
		t.Fatalf("member %d Running after StopMember", old)
	}
	if now := c.Leader(); now == old {
		t.Fatalf("leader is still the stopped member %d", old)
	}
	// The client fails over to a running member.
	eventually(t, 10*time.Second, func(ctx context.Context) error {
		_, err := cli.Put(ctx, "/etcdtest/cluster", "during")
		return err
	})

	c.StartMember(old)
	c.Leader() // all running members, the restarted one too, agree on it
	// The restarted member caught up on what it missed.
	wantValue(t, c.Member(old).Client(t), "/etcdtest/cluster", "during")
}

func TestProcessKeepsDataAcrossKill(t *testing.T) {
	p := etcdtest.StartProcess(t)
	cli := p.Client(t)
	put(t, cli, "/etcdtest/process", "durable")

	p.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := cli.Get(ctx, "/etcdtest/process")
	cancel()
	if err == nil {
		t.Fatal("Get succeeded with the process killed")
	}

	p.Restart()
	wantValue(t, cli, "/etcdtest/process", "durable")
	p.Restart() // a graceful stop, then a start
	wantValue(t, cli, "/etcdtest/process", "durable")
}

func TestProcessClusterElectsNewLeaderWhenLeaderIsKilled(t *testing.T) {
	c := etcdtest.StartProcessCluster(t, 3)
	cli := c.Client(t)
	put(t, cli, "/etcdtest/pcluster", "before")

	old := c.Leader(10 * time.Second)
	c.Member(old).Kill()
	if now := c.Leader(10 * time.Second); now == old {
		t.Fatalf("member %d still leads after it was killed", old)
	}
	put(t, cli, "/etcdtest/pcluster", "during")

	c.Member(old).Restart()
	c.Leader(10 * time.Second)
	// The restarted member caught up on what it missed.
	wantValue(t, c.Member(old).Client(t), "/etcdtest/pcluster", "during")
}

// proxied returns a client that reaches srv only through a new proxy.
func proxied(t *testing.T, srv *etcdtest.Server) (*etcdtest.Proxy, *clientv3.Client) {
	t.Helper()
	px := etcdtest.NewProxy(t, srv.Endpoints()[0])
	return px, px.Client(t)
}

// getWithin reports the error of a Get that may take up to timeout.
func getWithin(cli *clientv3.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := cli.Get(ctx, "/etcdtest/proxy")
	return err
}

func TestProxyBlackholeDropsTraffic(t *testing.T) {
	px, cli := proxied(t, etcdtest.NewServer(t))
	put(t, cli, "/etcdtest/proxy", "v")

	px.Blackhole()
	if err := getWithin(cli, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get through a blackhole: err = %v, want %v", err, context.DeadlineExceeded)
	}
	px.Unblackhole()
	wantValue(t, cli, "/etcdtest/proxy", "v")
}

func TestProxyPauseHoldsTraffic(t *testing.T) {
	px, cli := proxied(t, etcdtest.NewServer(t))
	put(t, cli, "/etcdtest/proxy", "v")

	px.Pause()
	if err := getWithin(cli, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get through a paused proxy: err = %v, want %v", err, context.DeadlineExceeded)
	}
	px.Unpause()
	// Nothing was lost, so the connection still works at once.
	if err := getWithin(cli, 5*time.Second); err != nil {
		t.Fatalf("Get after Unpause: %v", err)
	}
}

func TestProxyLatencyDelaysRoundTrips(t *testing.T) {
	px, cli := proxied(t, etcdtest.NewServer(t))
	put(t, cli, "/etcdtest/proxy", "v")

	const latency = 100 * time.Millisecond
	px.SetLatency(latency)
	start := time.Now()
	if err := getWithin(cli, 5*time.Second); err != nil {
		t.Fatalf("Get with latency: %v", err)
	}
	if took := time.Since(start); took < 2*latency {
		t.Fatalf("Get with %v latency each way took %v, want at least %v", latency, took, 2*latency)
	}
	px.ClearLatency()
	start = time.Now()
	if err := getWithin(cli, 5*time.Second); err != nil {
		t.Fatalf("Get after ClearLatency: %v", err)
	}
	if took := time.Since(start); took >= 2*latency {
		t.Fatalf("Get after ClearLatency took %v, want under %v", took, 2*latency)
	}
}

// versionRequest asks etcd's HTTP handler, which shares the client port
// with gRPC, for its version.
const versionRequest = "GET /version HTTP/1.1\r\nHost: etcd\r\n\r\n"

// roundTrip sends versionRequest on conn and reads the start of the answer.
func roundTrip(conn net.Conn) error {
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, versionRequest); err != nil {
		return err
	}
	buf := make([]byte, len("HTTP/1.1 200"))
	_, err := io.ReadFull(conn, buf)
	return err
}

func TestProxyDropConnectionsClosesOpenConnections(t *testing.T) {
	srv := etcdtest.NewServer(t)
	px := etcdtest.NewProxy(t, srv.Endpoints()[0])
	conn, err := net.Dial("tcp", px.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := roundTrip(conn); err != nil {
		t.Fatalf("request through the proxy: %v", err)
	}

	px.DropConnections()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		t.Fatalf("read from a dropped connection: %v, want EOF", err)
	}

	again, err := net.Dial("tcp", px.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if err := roundTrip(again); err != nil {
		t.Fatalf("request on a new connection after DropConnections: %v", err)
	}
}

func TestProxyClosesConnectionsWhenTargetIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close() // nothing listens there now
	px := etcdtest.NewProxy(t, target)

	conn, err := net.Dial("tcp", px.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		t.Fatalf("read through a proxy to a closed port: %v, want EOF", err)
	}
}
