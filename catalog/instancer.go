package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// Instancer is a go-kit sd.Instancer of one service that honours the
// operator's properties live: a disabled instance is absent from its
// events, and a weight override is written into the instance's JSON value
// ("weight"), which the endpointer strategies and the gRPC balancer read.
// Anything built on an sd.Instancer honours properties through it.
//
// It follows the service's instances and its properties through etcdsd's
// pipeline (no gap, resume, resync after compaction or an outage with the
// net difference, one sd.Event with Err per outage while the last instances
// are kept). Each change to either sends at most one coalesced sd.Event, so
// a drain reaches subscribers within one watch event.
type Instancer struct {
	service string
	layout  layout
	logger  log.Logger
	out     *pipeline.Feed // the instances with the properties applied

	mu        sync.Mutex     // serialises the two mirrors' observers
	instances *pipeline.Feed // as registered, decoded once
	props     overrides
	errs      [2]error // last error of the instances and properties mirror

	mirrors []*pipeline.Mirror
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
	s := &Instancer{
		service: service,
		layout:  c.layout,
		logger:  logger,
		out:     pipeline.NewFeed(pipeline.WithLogger(logger)),
		props:   make(overrides),
	}
	ctx, cancel := bound(ctx)
	defer cancel()
	props, err := c.mirror(ctx, c.layout.propsPrefix(service), KindProperty, pipeline.WithObserver(s.applyProps))
	if err != nil {
		s.out.Stop()
		return nil, fmt.Errorf("catalog: new instancer %q: %w", service, err)
	}
	s.mirrors = append(s.mirrors, props)
	instances := pipeline.NewFeed(pipeline.WithParser(c.layout.decodeInstance), pipeline.WithLogger(logger), pipeline.WithObserver(s.applyInstances))
	s.mu.Lock() // the properties' mirror already runs, and reads it
	s.instances = instances
	s.mu.Unlock()
	inst, err := pipeline.Start(ctx, pipeline.SourceFor(c.client, c.layout.servicePrefix(service)), instances, logger, 0, 0)
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("catalog: new instancer %q: %w", service, err)
	}
	s.mirrors = append(s.mirrors, inst)
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

// State returns the current instances, properties applied, and the current
// error if etcd is unavailable.
func (s *Instancer) State() sd.Event { return s.out.State() }

// Feed returns the typed change feed of the instances with the properties
// applied, through which etcdsd's endpointer and gRPC resolver apply
// changes by key. It is for etcdsd's own packages.
func (s *Instancer) Feed() *pipeline.Feed { return s.out }

// Stop ends the watches, stops delivering to subscribers and waits for
// every goroutine the Instancer started. It is idempotent.
func (s *Instancer) Stop() {
	for _, m := range s.mirrors {
		m.Stop()
	}
	s.out.Stop()
}

const (
	instancesMirror = iota
	propertiesMirror
)

// applyInstances applies changes of the registered instances.
func (s *Instancer) applyInstances(b pipeline.Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed(instancesMirror, b.Err) {
		return
	}
	changes := make([]pipeline.Change, 0, len(b.Changes))
	for _, ch := range b.Changes {
		if ch.Op == pipeline.Delete {
			changes = append(changes, ch)
			continue
		}
		changes = append(changes, s.change(ch))
	}
	s.publish(b.Rev, changes)
}

// applyProps applies changes of the properties, then recomputes every
// instance: properties change rarely, and one may concern all of them.
func (s *Instancer) applyProps(b pipeline.Batch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed(propertiesMirror, b.Err) {
		return
	}
	for _, ch := range b.Changes {
		service, id, name, ok := s.layout.parsePropertyKey(ch.Key)
		if !ok || service != s.service {
			continue
		}
		ref := propRef{id, name}
		if ch.Op == pipeline.Delete {
			delete(s.props, ref)
			continue
		}
		s.props[ref] = ch.Value
	}
	if s.instances == nil { // the first read of the properties, before the instances'
		return
	}
	registered := s.instances.Contents()
	changes := make([]pipeline.Change, 0, len(registered))
	for _, ch := range registered {
		changes = append(changes, s.change(ch))
	}
	s.publish(b.Rev, changes)
}

// change is the change of one registered instance under the properties: a
// removal when disabled, the value with the weight override otherwise. The
// value is kept as registered when no override applies.
func (s *Instancer) change(ch pipeline.Change) pipeline.Change {
	eff, enabled := s.props.apply(ch.Instance)
	if !enabled {
		return pipeline.Change{Op: pipeline.Delete, Key: ch.Key, Rev: ch.Rev}
	}
	if eff.Weight == ch.Instance.Weight {
		return ch
	}
	value, err := eff.Encode()
	if err != nil {
		level.Error(s.logger).Log("msg", "cannot encode instance", "key", ch.Key, "err", err)
		return pipeline.Change{Op: pipeline.Delete, Key: ch.Key, Rev: ch.Rev}
	}
	return pipeline.Change{Op: pipeline.Put, Key: ch.Key, Value: value, Instance: eff, Rev: ch.Rev}
}

// failed records the error of one mirror (nil clears it) and, if it is
// set, reports it to subscribers with the last instances.
func (s *Instancer) failed(which int, err error) bool {
	s.errs[which] = err
	if err != nil {
		level.Warn(s.logger).Log("msg", "etcd unavailable, keeping last instances", "err", err)
		s.out.Fail(err)
		return true
	}
	return false
}

// publish applies changes to the output, which clears any error, and then
// reports the error of the other mirror if it is still failing.
func (s *Instancer) publish(rev int64, changes []pipeline.Change) {
	s.out.Publish(rev, changes)
	if err := errors.Join(s.errs[instancesMirror], s.errs[propertiesMirror]); err != nil {
		s.out.Fail(err)
	}
}
