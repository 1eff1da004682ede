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

	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/instance"
)

// Instancer is a go-kit sd.Instancer of one service that honours the
// operator's properties live: a disabled instance is absent from its
// events, and a weight override is written into the instance's JSON value
// ("weight"), which the endpointer strategies and the gRPC balancer read.
// Anything built on an sd.Instancer honours properties through it.
//
// It merges two etcdv3.Mirrors, of the service's instances and of its
// properties, and inherits their guarantees (no gap, resume, resync after
// compaction or an outage, one sd.Event with Err per outage while the last
// instances are kept). Each change to either sends at most one coalesced
// sd.Event, so a drain reaches subscribers within one watch event.
type Instancer struct {
	service string
	layout  layout
	logger  log.Logger
	cache   *instance.Cache

	mu        sync.Mutex
	instances map[string]stored // key → instance as registered
	props     overrides
	errs      [2]error // last error of the instances and properties mirror

	mirrors []*etcdv3.Mirror
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
	s := &Instancer{
		service:   service,
		layout:    c.layout,
		logger:    log.With(c.logger, "service", service),
		cache:     instance.NewCache(),
		instances: make(map[string]stored),
		props:     make(overrides),
	}
	ctx, cancel := bound(ctx)
	defer cancel()
	props, err := etcdv3.NewMirror(ctx, c.client, c.layout.propsPrefix(service), c.logger, s.applyProps, c.mirror...)
	if err != nil {
		s.cache.Stop()
		return nil, fmt.Errorf("catalog: new instancer %q: %w", service, err)
	}
	s.mirrors = append(s.mirrors, props)
	inst, err := etcdv3.NewMirror(ctx, c.client, c.layout.servicePrefix(service), c.logger, s.applyInstances, c.mirror...)
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
func (s *Instancer) Register(ch chan<- sd.Event) { s.cache.Register(ch) }

// Deregister implements sd.Instancer.
func (s *Instancer) Deregister(ch chan<- sd.Event) { s.cache.Deregister(ch) }

// State returns the current instances, properties applied, and the current
// error if etcd is unavailable.
func (s *Instancer) State() sd.Event { return s.cache.State() }

// Stop ends the watches, stops delivering to subscribers and waits for
// every goroutine the Instancer started. It is idempotent.
func (s *Instancer) Stop() {
	for _, m := range s.mirrors {
		m.Stop()
	}
	s.cache.Stop()
}

// stored is an instance as registered: its value and what it parses to.
type stored struct {
	raw  string
	inst Instance
}

const (
	instancesMirror = iota
	propertiesMirror
)

// applyInstances applies changes of the registered instances.
func (s *Instancer) applyInstances(u etcdv3.Update) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed(instancesMirror, u.Err) {
		return
	}
	changes := make([]instance.Change, 0, len(u.Changes))
	for _, ch := range u.Changes {
		if ch.Type == etcdv3.Delete {
			delete(s.instances, ch.Key)
			changes = append(changes, instance.Change{Key: ch.Key, Delete: true})
			continue
		}
		inst, err := s.layout.decodeInstance(ch.Key, ch.Value)
		if err != nil {
			level.Error(s.logger).Log("msg", "skipping malformed instance", "err", err)
			delete(s.instances, ch.Key)
			changes = append(changes, instance.Change{Key: ch.Key, Delete: true})
			continue
		}
		s.instances[ch.Key] = stored{raw: ch.Value, inst: inst}
		changes = append(changes, s.change(ch.Key, ch.Value, inst))
	}
	s.publish(changes)
}

// applyProps applies changes of the properties, then recomputes every
// instance: properties change rarely, and one may concern all of them.
func (s *Instancer) applyProps(u etcdv3.Update) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed(propertiesMirror, u.Err) {
		return
	}
	for _, ch := range u.Changes {
		service, id, name, ok := s.layout.parsePropertyKey(ch.Key)
		if !ok || service != s.service {
			continue
		}
		ref := propRef{id, name}
		if ch.Type == etcdv3.Delete {
			delete(s.props, ref)
			continue
		}
		if _, err := s.layout.decodeProperty(ch.Key, ch.Value); err != nil {
			level.Error(s.logger).Log("msg", "ignoring malformed property", "err", err)
			delete(s.props, ref)
			continue
		}
		s.props[ref] = ch.Value
	}
	changes := make([]instance.Change, 0, len(s.instances))
	for key, st := range s.instances {
		changes = append(changes, s.change(key, st.raw, st.inst))
	}
	s.publish(changes)
}

// change is the cache change for one instance under the properties: a
// removal when disabled, the value with the weight override otherwise.
// raw is the stored value, kept as it is when no override applies.
func (s *Instancer) change(key, raw string, inst Instance) instance.Change {
	eff, enabled := s.props.apply(inst)
	if !enabled {
		return instance.Change{Key: key, Delete: true}
	}
	if eff.Weight == inst.Weight {
		return instance.Change{Key: key, Value: raw}
	}
	value, err := eff.Encode()
	if err != nil {
		level.Error(s.logger).Log("msg", "cannot encode instance", "key", key, "err", err)
		return instance.Change{Key: key, Delete: true}
	}
	return instance.Change{Key: key, Value: value}
}

// failed records the error of one mirror (nil clears it) and, if it is
// set, reports it to subscribers with the last instances.
func (s *Instancer) failed(which int, err error) bool {
	s.errs[which] = err
	if err != nil {
		level.Warn(s.logger).Log("msg", "etcd unavailable, keeping last instances", "err", err)
		s.cache.SetErr(err)
		return true
	}
	return false
}

// publish applies changes to the cache, which clears any error, and then
// reports the error of the other mirror if it is still failing.
func (s *Instancer) publish(changes []instance.Change) {
	s.cache.Apply(changes)
	if err := errors.Join(s.errs[instancesMirror], s.errs[propertiesMirror]); err != nil {
		s.cache.SetErr(err)
	}
}
