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
