package itest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Logger writes the library's key-value logs to the test log, which go test
// shows for failed tests and with -v.
func Logger(t testing.TB) log.Logger {
	return log.LoggerFunc(func(kv ...any) error {
		var b strings.Builder
		for i := 0; i+1 < len(kv); i += 2 {
			fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
		}
		t.Log(b.String())
		return nil
	})
}

// Eventually polls cond every 5 ms until it holds, and fails the test if it
// does not within the given time.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// KeyExists reports whether key is in etcd now.
func KeyExists(t testing.TB, cli *clientv3.Client, key string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	return err == nil && len(resp.Kvs) == 1
}

// Values returns the sorted, distinct values under prefix, read directly.
func Values(t testing.TB, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("get %q: %v", prefix, err)
	}
	out := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Value))
	}
	slices.Sort(out)
	return slices.Compact(out)
}
