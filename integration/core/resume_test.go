package core

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// etcdMetric reads one series of etcd's own metrics from the member at
// endpoint: the sum of the samples of name whose labels include every
// label given (`grpc_method="Range"`). Embedded members share the test
// process's registry, so compare readings, never absolute values.
func etcdMetric(t *testing.T, endpoint, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + endpoint + "/metrics")
	if err != nil {
		t.Fatalf("read etcd's metrics at %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read etcd's metrics at %s: %v", endpoint, err)
	}
	return sum
}

// rangeReads counts the range reads etcd's gRPC server has answered.
func rangeReads(t *testing.T, endpoint string) float64 {
	return etcdMetric(t, endpoint, "grpc_server_handled_total", `grpc_method="Range"`)
}

// errorEvents counts the events with an error among evs.
func errorEvents(evs []sd.Event) int {
	n := 0
	for _, ev := range evs {
		if ev.Err != nil {
			n++
		}
	}
	return n
}

// TestInstancerResumesAfterEtcdRestartWithoutReadingAgain restarts etcd,
// with its history, under an Instancer: the Instancer reports the outage
// once, resumes its watches from their revisions, reads nothing again, and
// ends equal to etcd; and etcd counts as many watchers as before, none
// left behind by the watches of before the restart.
func TestInstancerResumesAfterEtcdRestartWithoutReadingAgain(t *testing.T) {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("restarts etcd and reads its metrics: needs the embedded server")
	}
	endpoint := srv.Endpoints()[0]
	c := itestclient.New(t, srv.Endpoints(), func(o *etcdv3.ClientOptions) {
		o.DialTimeout = 300 * time.Millisecond
		o.RequestTimeout = time.Second
	})
	const prefix = "/services/resume-restart/"
	admin := srv.Client(t)
	ctx := context.Background()
	for _, k := range []string{"a", "b"} {
		if _, err := admin.Put(ctx, prefix+k, "127.0.0.1:"+k); err != nil {
			t.Fatal(err)
		}
	}
	in := newInstancer(t, c, prefix)
	sub := itest.Subscribe(t, in)
	sub.WaitInstances(t, 5*time.Second, "127.0.0.1:a", "127.0.0.1:b")
	_, from := sub.Since(0)
	reads := rangeReads(t, endpoint)
	watchers := etcdMetric(t, endpoint, "etcd_debugging_mvcc_watcher_total")

	srv.Stop()
	sub.WaitFor(t, 10*time.Second, "the outage", func(ev sd.Event) bool { return ev.Err != nil })
	srv.Start()
	admin = srv.Client(t)
	if _, err := admin.Put(ctx, prefix+"c", "127.0.0.1:c"); err != nil {
		t.Fatal(err)
	}
	sub.WaitInstances(t, 15*time.Second, "127.0.0.1:a", "127.0.0.1:b", "127.0.0.1:c")

	evs, _ := sub.Since(from)
	if n := errorEvents(evs); n != 1 {
		t.Errorf("%d error events over one outage, want 1: %+v", n, evs)
	}
	if n := rangeReads(t, endpoint) - reads; n != 0 {
		t.Errorf("%v range reads after the restart, want 0: the watches resume from their revisions", n)
	}
	// The Instancer's two watches (instances, properties) are back, and
	// no more: a watcher left behind stays until an event or etcd's
	// 10-minute progress notification for it reaches the client.
	itest.Eventually(t, 5*time.Second, fmt.Sprintf("etcd's watchers back at %v (now %v)", watchers, etcdMetric(t, endpoint, "etcd_debugging_mvcc_watcher_total")), func() bool {
		return etcdMetric(t, endpoint, "etcd_debugging_mvcc_watcher_total") == watchers
	})
}
