package catalog

import (
	"context"
	"fmt"
	"strings"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/internal/pipeline"
	"github.com/etcdsd/etcdsd/internal/property"
)

// Instancer is a go-kit sd.Instancer of one service that honours the
// operator's properties live: a disabled instance is absent from its
// events, and a weight override changes the typed weight that the
// endpointer strategies and the gRPC balancer read (through Feed), never
// the value that sd.Events and go-kit factories receive, which stays the
// one registered. Anything built on an sd.Instancer honours drains through
// it.
//
// It follows the service's instances and its properties through etcdsd's
// pipeline (no gap, resume, resync after compaction or an outage with the
// net difference, one sd.Event with Err per outage while the last instances
// are kept). Each change to either sends at most one coalesced sd.Event, so
// a drain reaches subscribers within one watch event. It is the overlay
// that etcdv3.NewInstancer applies too, on the client etcdv3.NewClient
// returns: for the same service and layout, both see the same instances.
type Instancer struct {
	out   *pipeline.Feed // the instances, seen with the properties applied
	props *pipeline.Feed
	taps  []*pipeline.Tap
}

var _ sd.Instancer = (*Instancer)(nil)

// NewInstancer returns an Instancer of service. It reads the properties,
// then the instances, so that the first state already honours them. It
// fails for a bad name and when etcd cannot be read within ctx
// (etcdv3.DefaultRequestTimeout without a deadline). Stop ends it.
func (c *Catalog) NewInstancer(ctx context.Context, service string) (*Instancer, error) {
	if err := checkSegment("service name", service); err != nil {
		return nil, fmt.Errorf("catalog: new instancer: %w", err)
	}
	logger := log.With(c.logger, "service", service)
	ov := property.NewOverlay(c.layout.servicePrefix(service), c.layout.propsPrefix(service), c.layout.decodeInstance, logger)
	s := &Instancer{out: ov.Instances(), props: ov.Properties()}
	ctx, cancel := bound(ctx)
	defer cancel()
	for _, m := range []struct {
		prefix string
		feed   *pipeline.Feed
	}{
		{c.layout.propsPrefix(service), s.props},
		{c.layout.servicePrefix(service), s.out},
	} {
		tap, err := c.follow(ctx, m.prefix, log.With(logger, "prefix", m.prefix), m.feed)
		if err != nil {
			s.Stop()
			return nil, fmt.Errorf("catalog: new instancer %q: %w", service, err)
		}
		s.taps = append(s.taps, tap)
	}
	return s, nil
}

// InstancerForPrefix is NewInstancer for the service whose instances live
// under prefix (<root><service>/ or <root><service>), returned as an
// sd.Instancer. Its signature is grpcsd.InstancerFactory's, so a gRPC
// resolver honours properties with
// grpcsd.WithInstancerFactory(cat.InstancerForPrefix). It fails for a
// prefix that names no single service under the catalog's root.
func (c *Catalog) InstancerForPrefix(ctx context.Context, prefix string) (sd.Instancer, error) {
	rest, ok := strings.CutPrefix(prefix, c.layout.root)
	service := strings.TrimSuffix(rest, "/")
	if !ok || checkSegment("service name", service) != nil {
		return nil, fmt.Errorf("catalog: instancer for prefix %q: not %s<service>/", prefix, c.layout.root)
	}
	return c.NewInstancer(ctx, service)
}

// Register implements sd.Instancer: ch receives the current state before
// Register returns, then one event per change.
func (s *Instancer) Register(ch chan<- sd.Event) { s.out.Register(ch) }

// Deregister implements sd.Instancer.
func (s *Instancer) Deregister(ch chan<- sd.Event) { s.out.Deregister(ch) }

// State returns the current instances, drained ones left out, and the
// current error if etcd is unavailable.
func (s *Instancer) State() sd.Event { return s.out.State() }

// Feed returns the typed change feed of the instances with the properties
// applied, through which etcdsd's endpointer and gRPC resolver apply
// changes by key and read weight overrides. It is for etcdsd's own
// packages.
func (s *Instancer) Feed() *pipeline.Feed { return s.out }

// Stop ends the watches, stops delivering to subscribers and waits for
// every goroutine the Instancer started. It is idempotent.
func (s *Instancer) Stop() {
	for _, t := range s.taps {
		t.Close()
	}
	s.out.Stop()
	s.props.Stop()
}
