package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/etcdv3"
)

// What reaches stderr is one short line: the operation, the bad value and
// the cause, without the layers of the library's wrapping. The errors here
// are the library's own, from a client of a loopback port where nothing
// listens.
func TestErrorsReachStderrAsOneShortLine(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	c, err := etcdv3.NewEtcdClient(context.Background(), []string{dead}, etcdv3.ClientOptions{DialTimeout: 300 * time.Millisecond, RequestTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cat, err := catalog.New(c)
	if err != nil {
		t.Fatal(err)
	}
	bounded := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	_, badName := cat.GetService(bounded(), "a/b")
	badWeight := cat.SetProperty(bounded(), "a", "b", catalog.PropWeight, "0")
	_, read := cat.GetService(bounded(), "app")
	_, watch := cat.Watch(bounded(), catalog.WatchService("app"))
	set := cat.SetProperty(bounded(), "app", "a", catalog.PropDisabled, "true")
	for _, tc := range []struct {
		err  error
		want string
	}{
		{badName, `service name "a/b" contains "/"`},
		{badWeight, `weight value "0" is not an integer in [1, 1048576]`},
		{read, `read instances under "/services/app/": no answer within --timeout`},
		{watch, fmt.Sprintf(`watch: read prefix "/services/app/": etcd at [%s]: no endpoint answered within dial timeout 300ms`, dead)},
		{set, `set property "/etcdsd/properties/services/app/a/disabled": no answer within --timeout`},
		{fmt.Errorf("etcdv3: register %q: %w", "/services/a/1", errors.New("rpc error: code = Unavailable desc = connection refused\nretry later")), `register "/services/a/1": connection refused; retry later`},
	} {
		if tc.err == nil {
			t.Fatalf("no error where %q was expected", tc.want)
		}
		if got := oneLine(tc.err); got != tc.want {
			t.Errorf("oneLine(%q)\n = %q\nwant %q", tc.err, got, tc.want)
		}
		if strings.Contains(oneLine(tc.err), "\n") {
			t.Errorf("oneLine(%q) spans lines", tc.err)
		}
	}
}

// Each error says its operation once: the command's name is not said
// again by the error it prints, nor is a package's prefix.
func TestErrorsSayTheirOperationOnce(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dead := deadEndpoint(t)
	for _, args := range [][]string{
		{"console", "--listen", l.Addr().String(), "--endpoints", dead, "--timeout", "300ms"},
		{"console", "--listen", "nonsense", "--endpoints", dead},
		{"watch", "--endpoints", dead, "--timeout", "300ms", "app"},
		{"list", "--endpoints", dead, "--timeout", "300ms", "app"},
		{"services", "--endpoints", dead, "--timeout", "300ms"},
	} {
		code, _, errOut, _ := runCLI(t, args...)
		first := strings.SplitN(errOut, "\n", 2)[0]
		if code == 0 || !strings.HasPrefix(first, "etcdsd "+args[0]+": ") {
			t.Fatalf("etcdsd %s: exit %d, stderr %q", args, code, errOut)
		}
		if op := saidTwice(first); op != "" {
			t.Errorf("etcdsd %s: %q says %q twice", args, first, op)
		}
	}
	// A watch that breaks once started says "watch" in its own error.
	broken := fmt.Errorf("catalog: watch: read prefix %q: %w", "/services/app/", errors.New("etcd unreachable"))
	if got := "etcdsd watch: " + commandError("watch", broken); saidTwice(got) != "" {
		t.Errorf("%q says %q twice", got, saidTwice(got))
	}
}

// saidTwice returns an operation that a line of "op: op: cause" names more
// than once, or "". The first segment is "etcdsd <command>".
func saidTwice(line string) string {
	segs := strings.Split(line, ": ")
	seen := map[string]bool{strings.TrimPrefix(segs[0], "etcdsd "): true}
	for _, s := range segs[1 : len(segs)-1] {
		if strings.ContainsAny(s, " \"") {
			continue // a value or a cause, not an operation
		}
		if seen[s] {
			return s
		}
		seen[s] = true
	}
	return ""
}
