package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcdsd/etcdsd/internal/pipeline"
	"github.com/etcdsd/etcdsd/internal/property"
)

// Instancer yields instances stored in a certain etcd keyspace. Any kind of
// change in that keyspace is watched and will update the Instancer's
// subscribers.
//
// Unlike go-kit's, it applies each change by key instead of re-reading the
// prefix, survives compaction and outages (subscribers get one sd.Event with
// Err and their last instances, then the true state on recovery), never
// lets a slow subscriber block the others, and Stop waits for everything it
// started. Each value is parsed once, as package instance defines it (a
// plain address, or a JSON object with an address); a value that does not
// parse is logged once and left out, and the other instances are kept.
// Every sd.Event holds the instances of one revision etcd had, never older
// than the last event's, however far behind the watch falls (etcd's
// history checker in integration/history holds it to that; see
// docs/reliability.md).
//
// On the client NewClient returns, it honours the operator's properties
// (etcdsd drain, undrain, set-weight; package catalog): the properties of
// the instances under prefix P live under ClientOptions.PropertiesRoot
// without its final "/" followed by P (/etcdsd/properties/services/app/ for
// P /services/app/), those of the instance at key P+id under <id>/<name>,
// and those of every instance under _/<name>. A disabled instance is left
// out of its sd.Events and of its Feed; a weight override changes only the
// typed weight of the Feed (read by etcdsd's endpointer and gRPC balancer),
// never the value that sd.Events and go-kit factories receive. Another
// Client (a fake with only go-kit's methods has no keys) gets the instances
// as registered.
type Instancer struct {
	// cache is what subscribers see: the instances, properties applied.
	// (go-kit's own tests read s.cache.State().)
	cache   *pipeline.Feed
	mirrors []*pipeline.Mirror
}

var _ sd.Instancer = (*Instancer)(nil)

// NewInstancer returns an etcd instancer. It reads the prefix, then watches
// it for changes and updates the subscribers. As go-kit's, it logs the
// number of instances read ("prefix", "instances"), or the error ("prefix",
// "err"). It fails for a nil client, an empty or malformed prefix, and when
// etcd refuses the read (a role that does not cover the prefix). When etcd
// cannot be read (within the client's request timeout, or its
// dial timeout while etcd is unreachable), the Instancer starts with that
// error in its state and fills in once etcd answers.
func NewInstancer(c Client, prefix string, logger log.Logger) (*Instancer, error) {
	return newInstancer(context.Background(), c, prefix, logger, false, 0, 0)
}

// NewInstancerContext is NewInstancer failing fast: it returns an error when
// the first read of the prefix fails within ctx.
func NewInstancerContext(ctx context.Context, c Client, prefix string, logger log.Logger) (*Instancer, error) {
	return newInstancer(ctx, c, prefix, logger, true, 0, 0)
}

// newInstancer takes whether a failed first read fails it, and the bounds
// of the backoff between attempts to read etcd again (0: the pipeline's
// defaults).
func newInstancer(ctx context.Context, c Client, prefix string, logger log.Logger, failFast bool, minBackoff, maxBackoff time.Duration) (*Instancer, error) {
	if c == nil {
		return nil, fmt.Errorf("etcdv3: new instancer %q: nil client", prefix)
	}
	if err := ValidatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("etcdv3: watch prefix %q: %w", prefix, err)
	}
	if logger == nil {
		logger = log.NewNopLogger()
	}
	logger = log.With(logger, "prefix", prefix)
	propsPrefix, withProps, err := propertiesPrefix(c, prefix)
	if err != nil {
		return nil, err
	}
	start := pipeline.StartRetrying
	if failFast {
		start = pipeline.Start
	}
	var metrics *pipeline.Metrics
	if ec, ok := c.(*EtcdClient); ok {
		metrics = ec.opts.Metrics.instancerMetrics(prefix)
	}
	s := &Instancer{}
	var feed *pipeline.Feed // what the prefix's mirror fills
	if withProps {
		ov := property.NewOverlay(prefix, propsPrefix, pipeline.ParseValue, logger, pipeline.WithMetrics(metrics))
		feed = ov.Instances()
		s.cache = feed
		// The properties first: the overlay hides the instances until it
		// has read them, so that the first state already honours them.
		pm, err := followProperties(ctx, start, c, ov, propsPrefix, logger, minBackoff, maxBackoff)
		if err != nil {
			s.Stop()
			return nil, err
		}
		if pm != nil {
			s.mirrors = append(s.mirrors, pm)
		}
	} else {
		feed = pipeline.NewFeed(pipeline.WithLogger(logger), pipeline.WithMetrics(metrics))
		s.cache = feed
	}
	m, err := start(ctx, source(c, prefix), feed, logger, minBackoff, maxBackoff)
	if m != nil {
		s.mirrors = append(s.mirrors, m)
	}
	if err != nil && (failFast || refused(err)) {
		s.Stop()
		return nil, err // it names the prefix
	}
	if err != nil {
		logger.Log("err", err)
	} else {
		logger.Log("instances", s.cache.Len())
	}
	return s, nil
}

// refused reports whether etcd answered a read with an error that retrying
// cannot fix, such as a role that does not cover the prefix: NewInstancer
// fails with it rather than retry forever.
func refused(err error) bool {
	return errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrAuthFailed)
}

// Stop terminates the Instancer: it ends the watches, stops delivering to
// subscribers and waits for every goroutine it started.
func (s *Instancer) Stop() {
	for _, m := range s.mirrors {
		m.Stop()
	}
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

// State returns the current instances (sorted, without duplicates, drained
// ones left out) and the current error, if etcd is unavailable.
func (s *Instancer) State() sd.Event {
	return s.cache.State()
}

// Revision returns the etcd revision the Instancer reflects.
func (s *Instancer) Revision() int64 {
	return s.cache.Revision()
}

// Feed returns the typed change feed under the Instancer, properties
// applied, through which etcdsd's endpointer and gRPC resolver apply
// changes by key instead of diffing go-kit's full lists. It is for etcdsd's
// own packages.
func (s *Instancer) Feed() *pipeline.Feed {
	return s.cache
}
