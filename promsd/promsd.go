// Package promsd exposes etcdsd's metrics to Prometheus through go-kit's
// metrics/prometheus: one call makes every metric of a Client (and its
// Registrars and Instancers), another those of Endpointers, registered on
// the Registerer you serve.
//
//	reg := prometheus.NewRegistry()
//	client, err := etcdv3.NewEtcdClient(ctx, endpoints, etcdv3.ClientOptions{Metrics: promsd.ClientMetrics(reg, "etcdsd")})
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// Any other go-kit metrics backend (expvar, StatsD, …) works as well: fill
// etcdv3.Metrics with its Counters, Gauges and Histograms.
package promsd

import (
	kitprometheus "github.com/go-kit/kit/metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdsd/etcdsd/endpointer"
	"github.com/etcdsd/etcdsd/etcdv3"
)

// UpdateBuckets are the buckets of the update-time histograms, in seconds:
// 100 µs to about 26 s.
var UpdateBuckets = prometheus.ExponentialBuckets(0.0001, 4, 10)

// ClientMetrics returns every etcdv3 metric as a Prometheus one named
// <namespace>_<name>, registered on reg. It panics, as
// prometheus.MustRegister does, when reg already has one of these names:
// call it once per Registerer and namespace.
//
//	<namespace>_registrations{state}              gauge: Registrars per state
//	<namespace>_reregistrations_total             lost leases granted again, keys put back
//	<namespace>_keepalive_failures_total          failed lease heartbeats
//	<namespace>_instances{prefix}                 gauge: instances per watched prefix
//	<namespace>_resyncs_total{prefix,cause}       fresh snapshots: cause compacted, lost or outage
//	<namespace>_watch_errors_total{prefix}        watches that broke, compaction aside
//	<namespace>_resumes_total{prefix}             broken watches resumed and caught up, no snapshot
//	<namespace>_instancer_update_seconds{prefix}  histogram: watch response to subscribers
func ClientMetrics(reg prometheus.Registerer, namespace string) *etcdv3.Metrics {
	f := factory{reg: reg, namespace: namespace}
	return &etcdv3.Metrics{
		Registrations:     f.gauge("registrations", "Registrars per state.", "state"),
		Reregistrations:   f.counter("reregistrations_total", "Lost leases granted again with their keys put back."),
		KeepaliveFailures: f.counter("keepalive_failures_total", "Failed lease heartbeats: etcd unreachable or the lease gone."),
		Instances:         f.gauge("instances", "Instances per watched prefix, operator properties applied.", "prefix"),
		Resyncs:           f.counter("resyncs_total", "Fresh snapshots read after the first, by cause: compacted (the revision to resume from), lost (etcd at a lower revision, or another cluster) or outage (the first read failed).", "prefix", "cause"),
		WatchErrors:       f.counter("watch_errors_total", "Watches that broke for another reason than compaction.", "prefix"),
		Resumes:           f.counter("resumes_total", "Broken watches resumed from their revision and caught up, without a snapshot.", "prefix"),
		UpdateSeconds:     f.histogram("instancer_update_seconds", "Seconds from a watch response to the Instancer's subscribers being handed it.", "prefix"),
	}
}

// EndpointerMetrics returns every endpointer metric as a Prometheus one
// named <namespace>_endpointer_<name>, with the label names given,
// registered on reg. Give each Endpointer its label values with
// Metrics.With, e.g. for labelNames "service":
//
//	m := promsd.EndpointerMetrics(reg, "etcdsd", "service")
//	users, err := endpointer.New(instancer, factory, logger, endpointer.WithMetrics(m.With("service", "users")))
//
// It panics, as prometheus.MustRegister does, when reg already has one of
// these names.
//
//	<namespace>_endpointer_picks_total            instances picked for an attempt
//	<namespace>_endpointer_failures_total         attempts whose instance failed
//	<namespace>_endpointer_retries_total          attempts after a request's first
//	<namespace>_endpointer_no_match_total         requests with no instance to pick
//	<namespace>_endpointer_ejections_total        instances ejected
//	<namespace>_endpointer_update_seconds         histogram: watch response to picks seeing it
func EndpointerMetrics(reg prometheus.Registerer, namespace string, labelNames ...string) endpointer.Metrics {
	f := factory{reg: reg, namespace: namespace, subsystem: "endpointer"}
	return endpointer.Metrics{
		Picks:         f.counter("picks_total", "Instances picked for a request attempt.", labelNames...),
		Failures:      f.counter("failures_total", "Attempts whose instance's endpoint returned an error.", labelNames...),
		Retries:       f.counter("retries_total", "Attempts after a request's first.", labelNames...),
		NoMatch:       f.counter("no_match_total", "Requests that found no instance to pick.", labelNames...),
		Ejections:     f.counter("ejections_total", "Instances ejected after consecutive failures.", labelNames...),
		UpdateSeconds: f.histogram("update_seconds", "Seconds from a watch response to the endpointer's picks seeing it.", labelNames...),
	}
}

// factory makes metrics registered on reg under namespace.
type factory struct {
	reg                  prometheus.Registerer
	namespace, subsystem string
}

func (f factory) counter(name, help string, labels ...string) *kitprometheus.Counter {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: f.namespace, Subsystem: f.subsystem, Name: name, Help: help}, labels)
	f.reg.MustRegister(v)
	if len(labels) == 0 {
		v.WithLabelValues() // exported at 0 from the start, not at the first event
	}
	return kitprometheus.NewCounter(v)
}

func (f factory) gauge(name, help string, labels ...string) *kitprometheus.Gauge {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: f.namespace, Subsystem: f.subsystem, Name: name, Help: help}, labels)
	f.reg.MustRegister(v)
	return kitprometheus.NewGauge(v)
}

func (f factory) histogram(name, help string, labels ...string) *kitprometheus.Histogram {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: f.namespace, Subsystem: f.subsystem, Name: name, Help: help, Buckets: UpdateBuckets}, labels)
	f.reg.MustRegister(v)
	return kitprometheus.NewHistogram(v)
}
