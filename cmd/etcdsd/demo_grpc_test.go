package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/etcdsd/etcdsd/etcdtest"
)

func TestGRPCDemoNarratesVersionRouting(t *testing.T) {
	// Registered first, so it runs last: after etcd stopped, nothing the
	// demo started may be left.
	t.Cleanup(func() { goleak.VerifyNone(t) })
	etcd := etcdtest.NewServer(t)
	var out strings.Builder
	start := time.Now()
	if err := runGRPCDemo(context.Background(), &out, etcd.Endpoints()); err != nil {
		t.Fatalf("runGRPCDemo: %v\n%s", err, out.String())
	}
	t.Logf("demo took %v:\n%s", time.Since(start), out.String())
	for _, want := range []string{
		"12 requests without a version were spread over all three: app-1 4, app-2 4, app-3 4.",
		`6 requests with grpcsd.WithVersion(ctx, "v2") went only to v2: app-3 6.`,
		"6 requests with the gRPC metadata x-etcdsd-version: v2, as another process would send them, went only to v2: app-3 6.",
		`A request for version v3 failed with Unavailable: grpcsd: no instance with version "v3" (versions available: "v1", "v2")`,
		"Stopped app-1 and deregistered it.",
		"8 requests without a version kept working on the other two: app-2 4, app-3 4.",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("narration lacks %q", want)
		}
	}
}
