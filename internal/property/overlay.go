package property

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// Overlay combines the Feed of the instances under a prefix with the
// properties under its properties prefix into one output Feed, which
// subscribers follow: a disabled instance is absent from it, and a weight
// override changes only the typed Instance.Weight of its changes, never
// the Value, so that go-kit subscribers and factories get exactly the value
// registered (a weight change sends them nothing) while the endpointer and
// the gRPC balancer read the weight.
//
// Feed the Instances Feed and the Properties Feed with a pipeline Mirror
// each, in either order (or call WithoutProperties instead of the second);
// the Overlay applies their batches as their observer, under one lock, and
// publishes to Out, nothing before the properties' first read. A change of
// the instances costs O(1) per changed key; a change of the properties
// recomputes every instance, since one may concern them all (properties
// change rarely).
//
// Errors of the instances' mirror reach the subscribers (once per outage;
// they keep the last instances), and the error stays until that mirror
// recovers: properties read meanwhile are published with the instances
// then. Errors of the properties' mirror are only logged: the instances are
// what subscribers wait for, and the properties keep their last known
// values until they can be read again.
type Overlay struct {
	prefix, propsPrefix string
	logger              log.Logger
	out                 *pipeline.Feed

	mu        sync.Mutex // serialises the two mirrors' observers
	instances *pipeline.Feed
	props     Overrides
	// pending: the properties have not been read yet; the instances wait,
	// so that a drained instance never reaches a subscriber. failing: the
	// instances' mirror reports an outage, which a publish would clear.
	// stale: what was read meanwhile is unpublished.
	pending, failing, stale bool
}

// NewOverlay returns an Overlay of the instances under prefix and the
// properties under propsPrefix (see Prefix). outOpts configure Out (e.g.
// its metrics).
func NewOverlay(prefix, propsPrefix string, logger log.Logger, outOpts ...pipeline.FeedOption) *Overlay {
	if logger == nil {
		logger = log.NewNopLogger()
	}
	return &Overlay{
		prefix:      prefix,
		propsPrefix: propsPrefix,
		logger:      logger,
		out:         pipeline.NewFeed(append([]pipeline.FeedOption{pipeline.WithLogger(logger)}, outOpts...)...),
		props:       make(Overrides),
		pending:     true,
	}
}

// Out returns the output Feed: the instances with the properties applied.
// Its owner stops it.
func (o *Overlay) Out() *pipeline.Feed { return o.out }

// Instances returns a new Feed for the mirror of the instances, whose
// values parse decodes; opts configure it too (e.g. the mirror's metrics).
// Call it once, before that mirror starts.
func (o *Overlay) Instances(parse pipeline.ParseFunc, opts ...pipeline.FeedOption) *pipeline.Feed {
	f := pipeline.NewFeed(append([]pipeline.FeedOption{pipeline.WithParser(parse), pipeline.WithLogger(o.logger), pipeline.WithObserver(o.applyInstances)}, opts...)...)
	o.mu.Lock()
	o.instances = f
	o.mu.Unlock()
	return f
}

// Properties returns a new Feed for the mirror of the properties: it
// leaves out (and logs once) the malformed ones. Out publishes no instance
// before that mirror's first read, or WithoutProperties.
func (o *Overlay) Properties() *pipeline.Feed {
	logger := log.With(o.logger, "properties", o.propsPrefix)
	return pipeline.NewFeed(pipeline.WithParser(Decode(o.propsPrefix)), pipeline.WithLogger(logger), pipeline.WithObserver(o.applyProps))
}

// WithoutProperties tells the Overlay that no mirror of the properties will
// run (they cannot be read): the instances are published as registered.
func (o *Overlay) WithoutProperties() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending = false
	if o.instances != nil {
		o.publishStale(o.instances.Revision(), time.Time{})
	}
}

// publishStale publishes every instance if something read was held back
// and the instances' mirror is not failing; at is when what triggers it
// was taken in (zero: now).
func (o *Overlay) publishStale(rev int64, at time.Time) {
	if !o.stale || o.failing || o.pending || o.instances == nil {
		return
	}
	o.stale = false
	o.out.Publish(rev, at, o.recompute(rev, nil))
}

// applyInstances applies a batch of the registered instances.
func (o *Overlay) applyInstances(b pipeline.Batch) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if b.Err != nil {
		level.Warn(o.logger).Log("msg", "etcd unavailable, keeping last instances", "err", b.Err)
		o.failing = true
		o.out.Fail(b.Err)
		return
	}
	o.failing = false
	if o.pending { // the Feed keeps b; it is published with the properties
		o.stale = true
		return
	}
	changes := make([]pipeline.Change, 0, len(b.Changes))
	for _, ch := range b.Changes {
		if ch.Op == pipeline.Delete {
			changes = append(changes, ch)
			continue
		}
		if !o.stale {
			changes = append(changes, o.effective(ch))
		}
	}
	if o.stale { // the Feed has applied b: its content is the whole truth
		o.stale = false
		changes = o.recompute(b.Rev, changes)
	}
	o.out.Publish(b.Rev, b.At, changes)
}

// applyProps applies a batch of the properties, then recomputes every
// instance.
func (o *Overlay) applyProps(b pipeline.Batch) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if b.Err != nil {
		level.Warn(o.logger).Log("msg", "cannot read the operator's properties, keeping the last ones", "properties", o.propsPrefix, "err", b.Err)
		return
	}
	if b.Reset {
		clear(o.props)
	}
	for _, ch := range b.Changes {
		id, name, ok := ParseKey(o.propsPrefix, ch.Key)
		if !ok {
			continue
		}
		if ch.Op == pipeline.Delete {
			delete(o.props, Ref{id, name})
			continue
		}
		o.props[Ref{id, name}] = ch.Value
	}
	o.pending = false
	// While the instances' mirror reports an outage, publishing would
	// clear it: subscribers get the properties with the instances, once it
	// recovers.
	o.stale = true
	o.publishStale(b.Rev, b.At)
}

// recompute appends to changes every registered instance under the
// properties, at revision rev.
func (o *Overlay) recompute(rev int64, changes []pipeline.Change) []pipeline.Change {
	registered := o.instances.Contents()
	changes = slices.Grow(changes, len(registered))
	for _, ch := range registered {
		ch.Rev = rev
		changes = append(changes, o.effective(ch))
	}
	return changes
}

// effective is the change of one registered instance under the properties:
// a removal when it is disabled, else the change with the weight override
// in its Instance. The Value stays the one registered.
func (o *Overlay) effective(ch pipeline.Change) pipeline.Change {
	id := strings.TrimPrefix(ch.Key, o.prefix)
	inst, enabled := o.props.Apply(id, ch.Instance)
	if !enabled {
		return pipeline.Change{Op: pipeline.Delete, Key: ch.Key, Rev: ch.Rev}
	}
	ch.Instance = inst
	return ch
}
