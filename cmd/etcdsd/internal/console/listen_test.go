package console_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/cmd/etcdsd/internal/console"
	"github.com/etcdsd/etcdsd/etcdtest"
)

func TestListenRefusesPlainHTTPBeyondLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "example.com:0"} {
		l, err := console.Listen(addr, false, false)
		if !errors.Is(err, console.ErrUnsafeAddress) || !strings.Contains(err.Error(), "--insecure") {
			if l != nil {
				l.Close()
			}
			t.Errorf("Listen(%q) without TLS or insecure: %v; want ErrUnsafeAddress naming --insecure", addr, err)
		}
	}
	for _, c := range []struct {
		addr              string
		withTLS, insecure bool
	}{
		{"127.0.0.1:0", false, false},
		{"localhost:0", false, false},
		{"0.0.0.0:0", true, false},
		{"0.0.0.0:0", false, true},
	} {
		l, err := console.Listen(c.addr, c.withTLS, c.insecure)
		if err != nil {
			t.Errorf("Listen(%q, tls %v, insecure %v): %v", c.addr, c.withTLS, c.insecure, err)
			continue
		}
		l.Close()
	}
}

// serve runs f's console with Serve on a loopback port until the test
// ends, and returns its base URL.
func (f *fixture) serve(t *testing.T, certFile, keyFile string) string {
	t.Helper()
	l, err := console.Listen("127.0.0.1:0", certFile != "", false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx, l, certFile, keyFile) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	scheme := "http"
	if certFile != "" {
		scheme = "https"
	}
	return scheme + "://" + l.Addr().String()
}

func TestServeOnLoopbackAnswersOnlyToLoopbackHostNames(t *testing.T) {
	f := newFixture(t, false)
	base := f.serve(t, "", "")
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	for host, want := range map[string]int{
		"127.0.0.1:" + port:        200,
		"localhost:" + port:        200,
		"LOCALHOST":                200,
		"[::1]:" + port:            200,
		"evil.example:" + port:     403,
		"127.0.0.1.nip.io:" + port: 403,
	} {
		r := do(t, "GET", base+"/api/services", "", "Host", host)
		if r.code != want {
			t.Errorf("Host %q: %d %s; want %d", host, r.code, r.body, want)
		}
	}
}

// Headers are bounded at the 16 KiB the docs say, not at what net/http
// allows beyond MaxHeaderBytes (4 KiB more).
func TestServeRefusesHeadersBeyond16KiB(t *testing.T) {
	f := newFixture(t, false)
	base := f.serve(t, "", "")
	for _, tc := range []struct {
		pad  int
		want int
	}{
		{15 << 10, http.StatusOK},
		{16<<10 + 1, http.StatusRequestHeaderFieldsTooLarge},
		{17 << 10, http.StatusRequestHeaderFieldsTooLarge},
		{20 << 10, http.StatusRequestHeaderFieldsTooLarge},
	} {
		r := do(t, "GET", base+"/api/services", "", "X-Pad", strings.Repeat("x", tc.pad))
		if r.code != tc.want {
			t.Errorf("a header of %d bytes: %d %.80s; want %d", tc.pad, r.code, r.body, tc.want)
		}
		// Beyond 20 KiB net/http refuses them itself, in plain text.
		if tc.want != http.StatusOK && tc.pad < 20<<10 && !strings.Contains(r.jsonError(t), "16384") {
			t.Errorf("a header of %d bytes: error %q does not name the limit", tc.pad, r.jsonError(t))
		}
	}
}

func TestServeBoundsHeaderSize(t *testing.T) {
	f := newFixture(t, false)
	base := f.serve(t, "", "")
	r := do(t, "GET", base+"/api/services", "", "X-Pad", strings.Repeat("x", 64<<10))
	if r.code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB of headers: %d; want 431", r.code)
	}
}

func TestServeEndsLiveStreamsWhenItsContextEnds(t *testing.T) {
	f := newFixture(t, false)
	l, err := console.Listen("127.0.0.1:0", false, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.srv.Serve(ctx, l, "", "") }()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(status, "200") {
		t.Fatalf("stream: %q, %v", status, err)
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10 s of its context ending, with a stream open")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Serve took %v to end a live stream", took)
	}
}

func TestServeOverTLS(t *testing.T) {
	f := newFixture(t, false)
	certs := etcdtest.NewCerts(t)
	base := f.serve(t, certs.ServerCert, certs.ServerKey)
	ca, err := os.ReadFile(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(base + "/api/config")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("GET over TLS: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	l, err := console.Listen("127.0.0.1:0", true, false)
	if err != nil {
		t.Fatal(err)
	}
	err = f.srv.Serve(context.Background(), l, certs.ServerCert, certs.CA+".missing")
	if err == nil || !strings.Contains(err.Error(), certs.CA+".missing") {
		t.Fatalf("Serve with a missing key file: %v; want an error naming it", err)
	}
}
