package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcdsd/etcdsd/internal/pipeline"
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
	// It is shared by the Instancers of the client and prefix.
	// (go-kit's own tests read s.cache.State().)
	cache      *pipeline.Feed
	core       *core
	dropLogger func()

	mu       sync.Mutex                   // orders this Instancer's registrations in the core
	chans    map[chan<- sd.Event]struct{} // registered through this Instancer
	stopped  bool
	stopOnce sync.Once
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
//
// The Instancers of one client (the same Client value) and prefix share
// one watch of the prefix, one of its properties and one list of
// instances: the first reads etcd, the next ones start from what it holds,
// at a revision etcd had, without reading etcd, and each change is applied
// and its sd.Event built once for all of them. Each still has its own
// subscribers and Stop. What they share logs to the logger of each of
// them (once per distinct logger), as long as it is not stopped.
func NewInstancer(c Client, prefix string, logger log.Logger) (*Instancer, error) {
	return newInstancer(context.Background(), c, prefix, logger, false, 0, 0)
}

// NewInstancerContext is NewInstancer failing fast: it returns an error when
// the first read of the prefix fails within ctx. When the client's shared
// watch of the prefix is failing (etcd unreachable), it reads the prefix
// itself, bounded as a first read is, and fails if that read fails;
// otherwise it waits, within ctx, for the shared watch to reflect etcd
// again.
func NewInstancerContext(ctx context.Context, c Client, prefix string, logger log.Logger) (*Instancer, error) {
	return newInstancer(ctx, c, prefix, logger, true, 0, 0)
}

// Source kinds of the shared Mirrors: the properties an Instancer reads
// through propertiesSource, which takes a refused read for no properties,
// are not those a catalog reads.
const propertiesKind = "etcdv3.properties"

// newInstancer takes whether a failed first read fails it, and the bounds
// of the backoff between attempts to read etcd again (0: the pipeline's
// defaults; the first Instancer of a client and prefix sets them).
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
	prefixed := log.With(logger, "prefix", prefix)
	propsPrefix, withProps, err := propertiesPrefix(c, prefix)
	if err != nil {
		return nil, err
	}
	var metrics *pipeline.Metrics
	if ec, ok := c.(*EtcdClient); ok {
		metrics = ec.opts.Metrics.instancerMetrics(prefix)
	}
	// The Taps taken here hold the Mirrors while the core is found or made
	// (it takes its own), and carry this caller's wait for etcd.
	opts := pipeline.ShareOptions{FailFast: failFast, Logger: prefixed, MinBackoff: minBackoff, MaxBackoff: maxBackoff}
	var props *pipeline.Tap
	if withProps {
		po := opts
		po.Source = func(l log.Logger) pipeline.Source {
			return &propertiesSource{Source: source(c, propsPrefix), prefix: propsPrefix, logger: l}
		}
		props, err = pipeline.Share(ctx, pipeline.ShareKey{Client: c, Prefix: propsPrefix, Kind: propertiesKind}, po)
		if props == nil {
			return nil, fmt.Errorf("etcdv3: new instancer: read the operator's properties: %w", err)
		}
		defer props.Close()
	}
	io := opts
	io.Source = func(log.Logger) pipeline.Source { return source(c, prefix) }
	inst, err := pipeline.Share(ctx, pipeline.ShareKey{Client: c, Prefix: prefix}, io)
	if inst == nil {
		return nil, fmt.Errorf("etcdv3: new instancer: %w", err) // err names the prefix
	}
	defer inst.Close()
	if err != nil && refused(err) {
		return nil, fmt.Errorf("etcdv3: new instancer: %w", err)
	}
	k := acquireCore(c, prefix, propsPrefix, inst, props, metrics)
	s := &Instancer{cache: k.feed, core: k, dropLogger: k.loggers.Add(logger), chans: make(map[chan<- sd.Event]struct{})}
	if err != nil {
		prefixed.Log("err", err)
	} else {
		prefixed.Log("instances", s.cache.Len())
	}
	return s, nil
}

// refused reports whether etcd answered a read with an error that retrying
// cannot fix, such as a role that does not cover the prefix: NewInstancer
// fails with it rather than retry forever.
func refused(err error) bool {
	return errors.Is(err, rpctypes.ErrPermissionDenied) || errors.Is(err, rpctypes.ErrAuthFailed)
}

// Stop terminates the Instancer: its subscribers are deregistered (their
// goroutines waited for) and get nothing more from it, and its share of
// the watches is released; the last Instancer of the client and prefix
// ends the watches and waits for them. A channel registered through
// another Instancer too keeps receiving from that one. It is idempotent.
func (s *Instancer) Stop() {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopped = true
		for ch := range s.chans {
			s.core.deregister(ch)
		}
		s.chans = nil
		s.mu.Unlock()
		s.dropLogger()
		s.core.release()
	})
}

// Register implements sd.Instancer. ch receives the current state before
// Register returns (again when it is registered already, as in go-kit),
// then one event per change. After Stop it does nothing.
func (s *Instancer) Register(ch chan<- sd.Event) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	_, again := s.chans[ch]
	s.chans[ch] = struct{}{}
	wait := s.core.register(ch, again)
	s.mu.Unlock()
	// Off the lock: a Stop meanwhile deregisters ch, which ends the wait.
	wait()
}

// Deregister implements sd.Instancer. A channel registered through another
// Instancer of the client and prefix too keeps receiving from that one; a
// channel not registered through this one is left alone.
func (s *Instancer) Deregister(ch chan<- sd.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.chans[ch]; ok {
		delete(s.chans, ch)
		s.core.deregister(ch)
	}
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
// own packages. The Feed is the one the Instancers of the client and
// prefix share: a Subscription taken from it lasts until it is closed (or
// the last of them stops).
func (s *Instancer) Feed() *pipeline.Feed {
	return s.cache
}
