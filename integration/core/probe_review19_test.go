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

// TestProbeStopOfOneSharedInstancerKeepsAnotherInstancersSubscriber: go-kit's
// sd.Instancer contract is per Instancer: Stop ends that Instancer's
// subscriptions, and a channel registered with another Instancer keeps
// receiving its events. Instancers of one client and prefix share a Feed,
// where a channel registered twice is one subscriber: stopping the first
// Instancer deregisters it from the second too.
func TestProbeStopOfOneSharedInstancerKeepsAnotherInstancersSubscriber(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := metricsClient(t, srv.Endpoints(), prometheus.NewRegistry())
	const prefix = "/services/probe-two-registrations/"
	a, err := etcdv3.NewInstancer(c, prefix, itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	b := newInstancer(t, c, prefix)
	ch := make(chan sd.Event, 16)
	a.Register(ch)
	b.Register(ch)
	<-ch // the current state, sent once: the Feed counts ch once
	a.Stop()
	if _, err := srv.Client(t).Put(context.Background(), prefix+"x", "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-ch:
		t.Logf("b's subscriber got %+v", ev)
	case <-time.After(3 * time.Second):
		t.Error("the channel registered with b got nothing after a was stopped and the prefix changed")
	}
	b.Deregister(ch)
}
