package etcdv3

import (
	"github.com/go-kit/kit/metrics"

	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// Metrics are the go-kit metrics (package github.com/go-kit/kit/metrics:
// Prometheus, expvar, StatsD, …) that a Client reports to, for its
// Registrars, its leases and the Instancers built on it. Set them in
// ClientOptions.Metrics. Any field may be nil, and a nil *Metrics, the
// default, reports nothing and costs nothing. Give labelled metrics the
// label names listed here.
type Metrics struct {
	// Registrations is the number of Registrars in each state, labelled
	// "state" (State.String: idle, registering, registered, paused,
	// deregistered).
	Registrations metrics.Gauge
	// Reregistrations counts lost leases (expired during a partition,
	// revoked, lost in a restore) granted again with their keys put back.
	Reregistrations metrics.Counter
	// KeepaliveFailures counts heartbeats that failed: etcd unreachable,
	// or the lease gone.
	KeepaliveFailures metrics.Counter
	// Instances is the number of instances an Instancer holds (operator
	// properties applied), labelled "prefix".
	Instances metrics.Gauge
	// Resyncs counts fresh snapshots an Instancer read after its first,
	// labelled "prefix" and "cause": "compacted" (etcd compacted the
	// revision the watch was to resume from), "lost" (etcd came back at a
	// lower revision than the Instancer's, or as another cluster) or
	// "outage" (the first read failed and a later one filled the
	// Instancer). A broken watch is
	// resumed, not read again: see Resumes.
	Resyncs metrics.Counter
	// WatchErrors counts watches that broke for another reason than
	// compaction (no leader, etcd unreachable, closed by etcd), labelled
	// "prefix".
	WatchErrors metrics.Counter
	// Resumes counts recoveries from a broken watch or an outage without a
	// snapshot: the watch resumed from the Instancer's revision, caught up,
	// and the subscribers' error cleared. Labelled "prefix".
	Resumes metrics.Counter
	// UpdateSeconds observes the seconds from a watch response (or a
	// snapshot) to the Instancer's subscribers being handed it: go-kit
	// channels told, etcdsd's endpointer and gRPC resolver offered the
	// changes. Labelled "prefix". The endpointer's own histogram measures
	// up to its balancer being updated.
	UpdateSeconds metrics.Histogram
}

// instancerMetrics returns the metrics of the Instancer of prefix, nil
// without metrics.
func (m *Metrics) instancerMetrics(prefix string) *pipeline.Metrics {
	if m == nil {
		return nil
	}
	out := &pipeline.Metrics{}
	if m.Instances != nil {
		out.Instances = m.Instances.With("prefix", prefix)
	}
	if m.UpdateSeconds != nil {
		out.Update = m.UpdateSeconds.With("prefix", prefix)
	}
	if m.Resyncs != nil {
		out.Resyncs = m.Resyncs.With("prefix", prefix)
	}
	if m.WatchErrors != nil {
		out.WatchErrors = m.WatchErrors.With("prefix", prefix)
	}
	if m.Resumes != nil {
		out.Resumes = m.Resumes.With("prefix", prefix)
	}
	return out
}

// registrationMoved moves one Registrar from state from to state to.
func (m *Metrics) registrationMoved(from, to State, counted bool) {
	if m == nil || m.Registrations == nil || (counted && from == to) {
		return
	}
	if counted {
		m.Registrations.With("state", from.String()).Add(-1)
	}
	m.Registrations.With("state", to.String()).Add(1)
}

func (m *Metrics) reregistered() {
	if m != nil && m.Reregistrations != nil {
		m.Reregistrations.Add(1)
	}
}

func (m *Metrics) keepaliveFailed() {
	if m != nil && m.KeepaliveFailures != nil {
		m.KeepaliveFailures.Add(1)
	}
}
