package grpcsd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"google.golang.org/grpc/resolver"

	"github.com/etcdsd/etcdsd/endpointer"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// watchers returns etcd's own count of the watches it holds,
// etcd_debugging_mvcc_watcher_total from its /metrics.
func watchers(t testing.TB, endpoint string) int {
	t.Helper()
	resp, err := http.Get("http://" + endpoint + "/metrics")
	if err != nil {
		t.Fatalf("read etcd's metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "etcd_debugging_mvcc_watcher_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("etcd_debugging_mvcc_watcher_total %q: %v", v, err)
			}
			return int(f)
		}
	}
	t.Fatalf("etcd's metrics have no etcd_debugging_mvcc_watcher_total (scan: %v)", sc.Err())
	return 0
}

// statesCC is a gRPC ClientConn that counts the states it is given.
type statesCC struct {
	resolver.ClientConn
	states atomic.Int64
}

func (cc *statesCC) UpdateState(resolver.State) error { cc.states.Add(1); return nil }
func (cc *statesCC) ReportError(error)                {}

func TestOneClientHoldsOneWatchPerPrefixAndOneForItsProperties(t *testing.T) {
	srv := newEtcd(t)
	if srv.External() {
		t.Skip("counts the watches of the whole etcd: needs the embedded server")
	}
	const prefix = "/services/watch-count/"
	admin := srv.Client(t)
	if _, err := admin.Put(context.Background(), prefix+"a", "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	before := watchers(t, srv.Endpoints()[0])
	c := itestclient.New(t, srv.Endpoints())

	for i := range 100 {
		in, err := etcdv3.NewInstancer(c, prefix, itest.Logger(t))
		if err != nil {
			t.Fatalf("instancer %d: %v", i, err)
		}
		t.Cleanup(in.Stop)
		if i < 10 {
			factory := func(string) (endpoint.Endpoint, io.Closer, error) { return endpoint.Nop, nil, nil }
			ep, err := endpointer.New(in, factory, itest.Logger(t))
			if err != nil {
				t.Fatalf("endpointer %d: %v", i, err)
			}
			t.Cleanup(ep.Close)
		}
	}
	b := newBuilder(t, c)
	for i := range 5 {
		cc := &statesCC{}
		r, err := b.Build(resolver.Target{URL: url.URL{Scheme: b.Scheme(), Path: prefix}}, cc, resolver.BuildOptions{})
		if err != nil {
			t.Fatalf("resolver %d: %v", i, err)
		}
		t.Cleanup(r.Close)
		itest.Eventually(t, 10*time.Second, fmt.Sprintf("resolver %d's first state", i), func() bool { return cc.states.Load() > 0 })
	}

	// etcd counts a watch once its stream has registered it, after the
	// constructors return: wait for the two expected, then count again.
	itest.Eventually(t, 10*time.Second, "the client's watches registered", func() bool {
		return watchers(t, srv.Endpoints()[0])-before >= 2
	})
	if got := watchers(t, srv.Endpoints()[0]) - before; got > 2 {
		t.Fatalf("100 Instancers, 10 endpointers and 5 resolvers on one client and prefix hold %d watches on etcd, want at most 2 (the prefix and its properties)", got)
	}
}
