package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/internal/console"
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
