package etcdv3

import (
	"context"
	"fmt"
	"strings"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/etcdsd/etcdsd/instance"
)

// Instancer yields instances stored in a certain etcd keyspace. Any kind of
// change in that keyspace is watched and will update the Instancer's
// subscribers.
//
// Unlike go-kit's, it applies each change by key instead of re-reading the
// prefix, survives compaction and outages (subscribers get one sd.Event with
// Err and their last instances, then the true state on recovery), never
// lets a slow subscriber block the others, and Stop waits for everything it
// started. Values that look like JSON but do not parse are skipped and
// logged; the other instances are kept.
type Instancer struct {
	cache  *instance.Cache
	mirror *Mirror
	logger log.Logger
	bad    map[string]string // key → malformed value already logged; loop-owned
}

var _ sd.Instancer = (*Instancer)(nil)

// NewInstancer returns an etcd instancer. It reads the prefix, then watches
// it for changes and updates the subscribers. It fails for an empty or
// malformed prefix and when etcd cannot be read within the client's request
// timeout.
func NewInstancer(c Client, prefix string, logger log.Logger) (*Instancer, error) {
	return NewInstancerContext(context.Background(), c, prefix, logger)
}

// NewInstancerContext is NewInstancer with a context bounding the initial
// read, and options for the underlying Mirror.
func NewInstancerContext(ctx context.Context, c Client, prefix string, logger log.Logger, opts ...MirrorOption) (*Instancer, error) {
	if logger == nil {
		logger = log.NewNopLogger()
	}
	s := &Instancer{
		cache:  instance.NewCache(),
		logger: log.With(logger, "prefix", prefix),
		bad:    make(map[string]string),
	}
	m, err := NewMirror(ctx, c, prefix, logger, s.apply, opts...)
	if err != nil {
		return nil, err
	}
	s.mirror = m
	level.Debug(s.logger).Log("msg", "instancer started", "instances", s.cache.Len(), "rev", m.Revision())
	return s, nil
}

// apply turns a mirror update into one cache update, hence one sd.Event.
func (s *Instancer) apply(u Update) {
	if u.Err != nil {
		level.Warn(s.logger).Log("msg", "etcd unavailable, keeping last instances", "err", u.Err)
		s.cache.SetErr(u.Err)
		return
	}
	changes := make([]instance.Change, 0, len(u.Changes))
	for _, ch := range u.Changes {
		if ch.Type == Delete {
			delete(s.bad, ch.Key)
			changes = append(changes, instance.Change{Key: ch.Key, Delete: true})
			continue
		}
		if err := checkValue(ch.Value); err != nil {
			if s.bad[ch.Key] != ch.Value {
				level.Error(s.logger).Log("msg", "skipping malformed instance", "key", ch.Key, "err", err)
				s.bad[ch.Key] = ch.Value
			}
			changes = append(changes, instance.Change{Key: ch.Key, Delete: true})
			continue
		}
		delete(s.bad, ch.Key)
		changes = append(changes, instance.Change{Key: ch.Key, Value: ch.Value})
	}
	s.cache.Apply(changes)
}

// checkValue rejects an empty value and a JSON value that does not parse.
// Other plain values pass as they are, as in go-kit, whatever they hold.
func checkValue(v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("empty value")
	}
	if strings.HasPrefix(strings.TrimSpace(v), "{") {
		_, err := instance.Parse(v)
		return err
	}
	return nil
}

// Stop terminates the Instancer: it ends the watch, stops delivering to
// subscribers and waits for every goroutine it started.
func (s *Instancer) Stop() {
	s.mirror.Stop()
	s.cache.Stop()
}

// Register implements sd.Instancer. ch receives the current state before
// Register returns, then one event per change.
func (s *Instancer) Register(ch chan<- sd.Event) {
	s.cache.Register(ch)
}

// Deregister implements sd.Instancer.
func (s *Instancer) Deregister(ch chan<- sd.Event) {
	s.cache.Deregister(ch)
}

// State returns the current instances (sorted, without duplicates) and the
// current error, if etcd is unavailable.
func (s *Instancer) State() sd.Event {
	return s.cache.State()
}

// Revision returns the etcd revision the Instancer reflects.
func (s *Instancer) Revision() int64 {
	return s.mirror.Revision()
}
