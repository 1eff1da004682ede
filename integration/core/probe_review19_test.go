package core

import (
	"context"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
)

// TestProbeResumesMetricCountsAResumeOfASharedMirror: Metrics.Resumes
// (etcdv3/metrics.go) "counts recoveries from a broken watch or an outage
// without a snapshot". Since every Instancer follows a shared Mirror, the
// Mirror's Feed is the shared root, whose Metrics carry only Resyncs and
// WatchErrors, so the Mirror's mt.Resumes is always nil.
func TestProbeResumesMetricCountsAResumeOfASharedMirror(t *testing.T) {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("restarts etcd")
	}
	reg := prometheus.NewRegistry()
	c := metricsClient(t, srv.Endpoints(), reg, func(o *etcdv3.ClientOptions) { o.DialTimeout = 500 * time.Millisecond })
	const prefix = "/services/probe-resumes/"
	in := newInstancer(t, c, prefix)
	sub := itest.Subscribe(t, in)
	sub.WaitInstances(t, 5*time.Second)

	srv.Stop()
	sub.WaitFor(t, 10*time.Second, "the outage", func(ev sd.Event) bool { return ev.Err != nil })
	srv.Start()
	if _, err := srv.Client(t).Put(context.Background(), prefix+"a", "127.0.0.1:a"); err != nil {
		t.Fatal(err)
	}
	sub.WaitInstances(t, 15*time.Second, "127.0.0.1:a")
	if got := promValue(t, reg, "etcdsd_resyncs_total", "prefix", prefix, "cause", "outage"); got != 0 {
		t.Fatalf("resyncs{cause=outage} = %v: not a resume", got)
	}
	if got := promValue(t, reg, "etcdsd_resumes_total", "prefix", prefix); got != 1 {
		t.Errorf("resumes = %v after the watch resumed and caught up, want 1", got)
	}
}
