package endpointer

import (
	"errors"

	"github.com/go-kit/kit/metrics"
)

// Metrics are the go-kit metrics (package github.com/go-kit/kit/metrics)
// an Endpointer reports to; see WithMetrics. Any field may be nil: it
// reports nothing and costs nothing.
type Metrics struct {
	// Picks counts instances picked for a request attempt, through
	// Endpoint or Pick.
	Picks metrics.Counter
	// Failures counts attempts whose instance's endpoint returned an error.
	Failures metrics.Counter
	// Retries counts attempts after a request's first.
	Retries metrics.Counter
	// NoMatch counts requests that found no instance to pick: none matches
	// their selector (ErrNoMatch), or there is none at all
	// (ErrNoEndpoints).
	NoMatch metrics.Counter
	// Ejections counts instances ejected (see WithEjection).
	Ejections metrics.Counter
	// UpdateSeconds observes the seconds from a watch response (the
	// Instancer's Feed taking it in) to the Endpointer's groups being
	// updated, so that picks see the change. Only an Instancer of etcdsd
	// tells when a change was taken in; another is not measured.
	UpdateSeconds metrics.Histogram
}

// With returns m with labelValues applied to each of its metrics, e.g.
// m.With("service", "users") for the Endpointer of one service among
// several that report to the same metrics.
func (m Metrics) With(labelValues ...string) Metrics {
	if m.Picks != nil {
		m.Picks = m.Picks.With(labelValues...)
	}
	if m.Failures != nil {
		m.Failures = m.Failures.With(labelValues...)
	}
	if m.Retries != nil {
		m.Retries = m.Retries.With(labelValues...)
	}
	if m.NoMatch != nil {
		m.NoMatch = m.NoMatch.With(labelValues...)
	}
	if m.Ejections != nil {
		m.Ejections = m.Ejections.With(labelValues...)
	}
	if m.UpdateSeconds != nil {
		m.UpdateSeconds = m.UpdateSeconds.With(labelValues...)
	}
	return m
}

// WithMetrics has the Endpointer report to m. Default: no metrics.
func WithMetrics(m Metrics) Option {
	return func(c *config) error {
		c.metrics = m
		return nil
	}
}

func count(c metrics.Counter) {
	if c != nil {
		c.Add(1)
	}
}

// countPickErr counts a request that found no instance.
func (m *Metrics) countPickErr(err error) {
	if m.NoMatch != nil && (errors.Is(err, ErrNoMatch) || errors.Is(err, ErrNoEndpoints)) {
		m.NoMatch.Add(1)
	}
}
