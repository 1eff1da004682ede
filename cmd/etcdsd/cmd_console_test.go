package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/cmd/etcdsd/internal/console"
	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/internal/itest"
)

func TestConsoleRefusesPlainHTTPBeyondLoopback(t *testing.T) {
	for _, args := range [][]string{
		{"console", "--listen", "0.0.0.0:0"},
		{"console", "--listen", ":0"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), append(args, "--endpoints", "127.0.0.1:1"), &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), "--insecure") || !strings.Contains(errOut.String(), "--listen-cert") {
			t.Errorf("etcdsd %q: exit %d, stderr %q; want exit 2 naming --insecure and --listen-cert", args, code, errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"console", "--listen-cert", "c.pem"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "--listen-key") {
		t.Errorf("--listen-cert alone: exit %d, stderr %q", code, errOut.String())
	}
}

func TestConsoleServesUntilInterrupted(t *testing.T) {
	e, err := startEmbeddedEtcd()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut itest.Buffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, []string{"console", "--endpoints", e.Endpoint(), "--listen", "127.0.0.1:0", "--allow-writes", "-o", "json"}, &out, &errOut)
	}()
	var start consoleStart
	deadline := time.Now().Add(10 * time.Second)
	for json.NewDecoder(strings.NewReader(out.String())).Decode(&start) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("no start line within 10 s; stdout %q, stderr %q", out.String(), errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !start.AllowWrites || len(start.Token) != 32 || start.TokenHeader != console.TokenHeader || !strings.HasPrefix(start.URL, "http://127.0.0.1:") {
		t.Fatalf("start line %+v", start)
	}
	resp, err := http.Get(start.URL + "api/services")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"services":[]`) {
		t.Fatalf("GET /api/services: %d %s", resp.StatusCode, body)
	}
	cancel()
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("exit code %d after an interrupt; stderr %q", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("console did not stop within 10 s of an interrupt")
	}
}

// The console's Watch of a large fleet with properties does not hold back
// its own start: the console serves the overview of 10,000 instances.
func TestConsoleStartsOnTenThousandInstancesWithProperties(t *testing.T) {
	etcd := etcdtest.NewServer(t)
	raw := etcd.Client(t)
	const services, perService = 10, 1000
	var ops []clientv3.Op
	flush := func() {
		if _, err := raw.Txn(context.Background()).Then(ops...).Commit(); err != nil {
			t.Fatalf("txn of %d puts: %v", len(ops), err)
		}
		ops = ops[:0]
	}
	for i := range services {
		for j := range perService {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("/services/svc-%d/i%d", i, j), fmt.Sprintf("10.%d.%d.%d:80", i, j/256, j%256)))
			if len(ops) == 128 {
				flush()
			}
		}
	}
	ops = append(ops,
		clientv3.OpPut("/etcdsd/properties/services/svc-0/_/disabled", "true"),
		clientv3.OpPut("/etcdsd/properties/services/svc-1/i1/weight", "5"))
	flush()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut itest.Buffer
	exited := make(chan int, 1)
	started := time.Now()
	go func() {
		exited <- run(ctx, []string{"console", "--endpoints", strings.Join(etcd.Endpoints(), ","), "--listen", "127.0.0.1:0", "-o", "json"}, &out, &errOut)
	}()
	stop := func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Error("console did not stop within 10 s of an interrupt")
		}
	}
	defer stop()
	var start consoleStart
	for json.NewDecoder(strings.NewReader(out.String())).Decode(&start) != nil {
		if time.Since(started) > 15*time.Second {
			t.Fatalf("no start line within 15 s; stdout %q, stderr %q", out.String(), errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(started)
	var o console.Overview
	itest.Eventually(t, 15*time.Second, "the overview of every instance, svc-0 drained", func() bool {
		resp, err := http.Get(start.URL + "api/services")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET /api/services: %d", resp.StatusCode)
		}
		o = console.Overview{}
		if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range o.Services {
			n += s.Instances
		}
		return n == services*perService && len(o.Services) == services && o.Services[0].ServiceDrained
	})
	t.Logf("console: started in %v, overview of %d services complete in %v", took, len(o.Services), time.Since(started))
}
