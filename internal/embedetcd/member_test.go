package embedetcd

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
)

// TestMain fails the run if goroutines are left, except the one embedded
// etcd leaks on its own (see etcdtest/leaks.go): a peer /version handler
// that was serving when its member stopped waits forever for the closed
// backend's read lock.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/etcdserver/api/etcdhttp.newPeerHandler.versionHandler.func1"),
		// The same closure under Go 1.27, which does not inline versionHandler.
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/etcdserver/api/etcdhttp.versionHandler.func1"))
}

// start launches a single member on free loopback ports with data in
// t.TempDir, waits until it serves, and stops it when the test ends.
func start(t *testing.T) *Member {
	t.Helper()
	ports, err := FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	m := &Member{Name: "unit", Dir: t.TempDir(), Client: LoopbackURL(ports[0]), Peer: LoopbackURL(ports[1])}
	if err := m.Launch(3); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	if err := m.WaitReady(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMemberKeepsDataAndEndpointAcrossStopAndLaunch(t *testing.T) {
	m := start(t)
	endpoint := m.ClientEndpoint()
	if want := m.Client.Host; endpoint != want {
		t.Fatalf("ClientEndpoint() = %q, want %q", endpoint, want)
	}
	if self, lead, ok := m.Leadership(); !ok || self == 0 || self != lead {
		t.Fatalf("Leadership() = %d, %d, %v; want itself as leader", self, lead, ok)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put: %v", err)
	}

	m.Stop()
	if m.Running() {
		t.Fatal("Running() after Stop = true")
	}
	if err := m.Launch(3); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitReady(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := m.ClientEndpoint(); got != endpoint {
		t.Fatalf("ClientEndpoint() after restart = %q, want %q", got, endpoint)
	}
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get after restart = %v, want k=v", resp.Kvs)
	}
}

func TestWaitReadyNamesMemberThatIsNotStarted(t *testing.T) {
	m := &Member{Name: "idle"}
	err := m.WaitReady(time.Now().Add(time.Second))
	if err == nil || !strings.Contains(err.Error(), "member idle") {
		t.Fatalf("WaitReady() = %v, want an error naming member idle", err)
	}
}
