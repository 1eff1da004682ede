package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestDemoNarratesTheWholeJobAndExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes about 15 s")
	}
	var out, errOut bytes.Buffer
	start := time.Now()
	code := run(context.Background(), []string{"demo"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit code %d; stderr: %s\nstdout:\n%s", code, errOut.String(), out.String())
	}
	if took := time.Since(start); took > 45*time.Second {
		t.Errorf("demo took %v, want about 15 s", took)
	}
	for _, line := range []string{
		"Started an embedded etcd at 127.0.0.1:",
		"6 requests answered by: greeter-1×2, greeter-2×2, greeter-3×2.",
		"Every request succeeded: lb.Retry moved on to the next instance.",
		"greeter-2 deregistered; every subscriber dropped it",
		"Subscribers were told once (etcd unreachable) and kept their 2 instances.",
		"The Instancer reconnected and saw greeter-4, registered after the restart.",
		"6 requests answered by: greeter-1×2, greeter-3×2, greeter-4×2.",
		"Route gRPC calls by version",
		`6 requests with grpcsd.WithVersion(ctx, "v2") went only to v2: app-3 6.`,
		"Metrics of every client: http://127.0.0.1:",
		`etcdsd_registrations{state="registered"} 3`,
		`etcdsd_resumes_total{prefix="/etcdsd-demo/services/greeter/"} 1`,
		"Demo finished",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("narration lacks %q; got:\n%s", line, out.String())
		}
	}
}

func TestDemoRefusesBadFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"demo", "--endpoints", " , "}, &out, &errOut); code != 2 {
		t.Fatalf("exit code %d for an empty endpoint list, want 2", code)
	}
	if !strings.Contains(errOut.String(), `--endpoints " , " names no endpoint`) {
		t.Fatalf("stderr = %q", errOut.String())
	}
	if code := run(context.Background(), []string{"demo", "--no-such-flag"}, &out, &errOut); code != 2 {
		t.Fatalf("exit code %d for an unknown flag, want 2", code)
	}
}

func TestDemoGRPCRunsOnlyTheGRPCPart(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"demo", "grpc"}, &out, &errOut); code != 0 {
		t.Fatalf("exit code %d; stderr: %s", code, errOut.String())
	}
	if strings.Contains(out.String(), "greeter") || !strings.Contains(out.String(), "2. Route gRPC calls by version") {
		t.Fatalf("demo grpc output:\n%s", out.String())
	}
	var errs bytes.Buffer
	if code := run(context.Background(), []string{"demo", "bogus"}, &out, &errs); code != 2 || !strings.Contains(errs.String(), `unknown demo "bogus"`) {
		t.Fatalf("demo bogus: exit %d, stderr %q", code, errs.String())
	}
}
