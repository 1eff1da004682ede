package core

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
	"github.com/etcdsd/etcdsd/promsd"
)

// promValue returns the value of the metric name with the given labels
// (for a histogram, its sample count), or 0 when there is none.
func promValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func metricsClient(t *testing.T, endpoints []string, reg *prometheus.Registry, opts ...func(*etcdv3.ClientOptions)) *etcdv3.EtcdClient {
	return itestclient.New(t, endpoints, append([]func(*etcdv3.ClientOptions){func(o *etcdv3.ClientOptions) {
		o.Metrics = promsd.ClientMetrics(reg, "etcdsd")
	}}, opts...)...)
}

func TestMetricsCountRegistrationStatesAndALeaseRevokedAndGrantedAgain(t *testing.T) {
	srv := etcdtest.NewServer(t)
	reg := prometheus.NewRegistry()
	c := metricsClient(t, srv.Endpoints(), reg)
	const key = "/services/metrics-revoke/a"
	r := etcdv3.NewRegistrar(c, etcdv3.Service{Key: key, Value: "127.0.0.1:1", TTL: shortTTL()}, itest.Logger(t))
	if err := r.RegisterContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := promValue(t, reg, "etcdsd_registrations", "state", "registered"); got != 1 {
		t.Fatalf("registrations{state=registered} = %v, want 1", got)
	}

	admin := srv.Client(t)
	if _, err := admin.Revoke(context.Background(), clientv3.LeaseID(r.Status().LeaseID)); err != nil {
		t.Fatal(err)
	}
	itest.Eventually(t, 10*time.Second, "the revoked lease granted again", func() bool {
		return promValue(t, reg, "etcdsd_reregistrations_total") == 1 && itest.KeyExists(t, admin, key)
	})
	if got := promValue(t, reg, "etcdsd_keepalive_failures_total"); got < 1 {
		t.Fatalf("keepalive failures = %v after a revoke, want at least 1", got)
	}

	r.Deregister()
	if reg, dereg := promValue(t, reg, "etcdsd_registrations", "state", "registered"), promValue(t, reg, "etcdsd_registrations", "state", "deregistered"); reg != 0 || dereg != 1 {
		t.Fatalf("after Deregister: registered %v, deregistered %v; want 0 and 1", reg, dereg)
	}
}

func TestMetricsCountAWatchBrokenByARestartAndTheResumeAfterIt(t *testing.T) {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("restarts etcd: needs the embedded server")
	}
	reg := prometheus.NewRegistry()
	c := metricsClient(t, srv.Endpoints(), reg, func(o *etcdv3.ClientOptions) { o.DialTimeout = 500 * time.Millisecond })
	const prefix = "/services/metrics-restart/"
	admin := srv.Client(t)
	for _, k := range []string{"a", "b"} {
		if _, err := admin.Put(context.Background(), prefix+k, "127.0.0.1:"+k); err != nil {
			t.Fatal(err)
		}
	}
	in := newInstancer(t, c, prefix)
	sub := itest.Subscribe(t, in)
	sub.WaitInstances(t, 5*time.Second, "127.0.0.1:a", "127.0.0.1:b")
	if got := promValue(t, reg, "etcdsd_instances", "prefix", prefix); got != 2 {
		t.Fatalf("instances = %v, want 2", got)
	}

	srv.Stop()
	sub.WaitFor(t, 10*time.Second, "the outage", func(ev sd.Event) bool { return ev.Err != nil })
	srv.Start()
	admin = srv.Client(t)
	if _, err := admin.Put(context.Background(), prefix+"c", "127.0.0.1:c"); err != nil {
		t.Fatal(err)
	}
	sub.WaitInstances(t, 15*time.Second, "127.0.0.1:a", "127.0.0.1:b", "127.0.0.1:c")

	if got := promValue(t, reg, "etcdsd_watch_errors_total", "prefix", prefix); got < 1 {
		t.Errorf("watch errors = %v after a restart, want at least 1", got)
	}
	if got := promValue(t, reg, "etcdsd_resumes_total", "prefix", prefix); got != 1 {
		t.Errorf("resumes = %v after a restart, want 1", got)
	}
	if got := promValue(t, reg, "etcdsd_resyncs_total", "prefix", prefix, "cause", "outage"); got != 0 {
		t.Errorf("resyncs{cause=outage} = %v after a restart, want 0: the watch resumes", got)
	}
	if got := promValue(t, reg, "etcdsd_resyncs_total", "prefix", prefix, "cause", "compacted"); got != 0 {
		t.Errorf("resyncs{cause=compacted} = %v, want 0", got)
	}
	itest.Eventually(t, 5*time.Second, "instances gauge at 3", func() bool { return promValue(t, reg, "etcdsd_instances", "prefix", prefix) == 3 })
	// The first read and the caught-up batch at least (the put may come with it).
	if got := promValue(t, reg, "etcdsd_instancer_update_seconds", "prefix", prefix); got < 2 {
		t.Errorf("update observations = %v, want at least 2", got)
	}
}

// Every Instancer follows its client's shared watch of the prefix: the
// watch's resume is counted for it as its resyncs and watch errors are.
func TestMetricsCountTheResumeOfAnInstancersSharedWatch(t *testing.T) {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("restarts etcd")
	}
	reg := prometheus.NewRegistry()
	c := metricsClient(t, srv.Endpoints(), reg, func(o *etcdv3.ClientOptions) { o.DialTimeout = 500 * time.Millisecond })
	const prefix = "/services/metrics-shared-resume/"
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

func TestMetricsCountAResyncAfterCompaction(t *testing.T) {
	srv := etcdtest.NewServer(t)
	proxy := etcdtest.NewProxy(t, srv.Endpoints()[0])
	reg := prometheus.NewRegistry()
	c := metricsClient(t, []string{proxy.Endpoint()}, reg, func(o *etcdv3.ClientOptions) { o.DialTimeout = 5 * time.Second })
	const prefix = "/services/metrics-compact/"
	admin := srv.Client(t)
	ctx := context.Background()
	if _, err := admin.Put(ctx, prefix+"a", "127.0.0.1:a"); err != nil {
		t.Fatal(err)
	}
	in := newInstancer(t, c, prefix)
	sub := itest.Subscribe(t, in)
	sub.WaitInstances(t, 5*time.Second, "127.0.0.1:a")

	// Hold the traffic and cut the connection: the client's watch resumes
	// from its next revision once traffic flows again, by then compacted.
	proxy.Pause()
	proxy.DropConnections()
	var last int64
	for i := range 5 {
		resp, err := admin.Put(ctx, fmt.Sprintf("%sn%d", prefix, i), fmt.Sprintf("127.0.1.%d:1", i))
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}
	if _, err := admin.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	proxy.Unpause()

	sub.WaitInstances(t, 15*time.Second, "127.0.0.1:a", "127.0.1.0:1", "127.0.1.1:1", "127.0.1.2:1", "127.0.1.3:1", "127.0.1.4:1")
	if got := promValue(t, reg, "etcdsd_resyncs_total", "prefix", prefix, "cause", "compacted"); got != 1 {
		t.Errorf("resyncs{cause=compacted} = %v, want 1", got)
	}
	if got := promValue(t, reg, "etcdsd_watch_errors_total", "prefix", prefix); got != 0 {
		t.Errorf("watch errors = %v, want 0: compaction is not one", got)
	}
}
