package main

import (
	"context"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/etcdsd/etcdsd/internal/itest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// deadEndpoint returns a loopback address where nothing listens.
func deadEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// runCLI runs one command line, bounded by a few seconds, and returns its
// exit code, stdout and stderr, and how long it took.
func runCLI(t *testing.T, args ...string) (int, string, string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errOut itest.Buffer
	start := time.Now()
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String(), time.Since(start)
}
