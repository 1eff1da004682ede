package property

import (
	"strings"
	"sync"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// Overlay applies the properties under a properties prefix to the Feed of
// the instances under a prefix, which subscribers follow: a disabled
// instance is hidden from it, and a weight override changes only the typed
// Instance.Weight its consumers see, never the Value, so that go-kit
// subscribers and factories get exactly the value registered (a weight
// change sends them nothing) while the endpointer and the gRPC balancer
// read the weight.
//
// The Feed is one: it keeps each instance as registered, once, and a
// Filter decides what consumers see of it. Fill Instances with a pipeline
// Mirror of the prefix and Properties with one of the properties prefix (a
// client that may not read them fills it with no properties). A change of
// the instances costs what it costs without properties, plus a lookup; a
// change of the properties asks the Filter again about every instance,
// since one may concern them all (properties change rarely).
//
// Until the properties have been read once, consumers see no instance, so
// that a drained instance never reaches one. Errors of the instances'
// mirror reach the subscribers through the Feed (once per outage; they
// keep the last instances). Errors of the properties' mirror are only
// logged: the properties keep their last known values until they can be
// read again.
type Overlay struct {
	prefix, propsPrefix string
	logger              log.Logger
	feed                *pipeline.Feed

	mu      sync.Mutex // guards props and pending, which the filter reads
	props   Overrides
	pending bool // the properties have not been read yet
}

// NewOverlay returns an Overlay of the instances under prefix, whose
// values parse decodes, and of the properties under propsPrefix (see
// Prefix). opts configure the instances' Feed too (e.g. its metrics).
func NewOverlay(prefix, propsPrefix string, parse pipeline.ParseFunc, logger log.Logger, opts ...pipeline.FeedOption) *Overlay {
	if logger == nil {
		logger = log.NewNopLogger()
	}
	o := &Overlay{
		prefix:      prefix,
		propsPrefix: propsPrefix,
		logger:      logger,
		props:       make(Overrides),
		pending:     true,
	}
	o.feed = pipeline.NewFeed(append([]pipeline.FeedOption{pipeline.WithParser(parse), pipeline.WithLogger(logger), pipeline.WithFilter(o.filter)}, opts...)...)
	return o
}

// Instances returns the Feed of the instances, properties applied: the one
// the instances' mirror fills and subscribers follow. Its owner stops it.
func (o *Overlay) Instances() *pipeline.Feed { return o.feed }

// Properties returns a new Feed for the mirror of the properties: it
// leaves out (and logs once) the malformed ones.
func (o *Overlay) Properties() *pipeline.Feed {
	logger := log.With(o.logger, "properties", o.propsPrefix)
	return pipeline.NewFeed(pipeline.WithParser(Decode(o.propsPrefix)), pipeline.WithLogger(logger), pipeline.WithObserver(o.applyProps))
}

// filter is the instances Feed's Filter.
func (o *Overlay) filter(key string, registered instance.Instance) (instance.Instance, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pending {
		return registered, false
	}
	return o.props.Apply(strings.TrimPrefix(key, o.prefix), registered)
}

// applyProps applies a batch of the properties, then has the instances
// Feed ask the filter again about every instance. It runs on the
// properties' mirror goroutine; the Feed's producer methods are safe to
// call from two mirrors, since the Feed serialises them.
func (o *Overlay) applyProps(b pipeline.Batch) {
	if b.Err != nil {
		level.Warn(o.logger).Log("msg", "cannot read the operator's properties, keeping the last ones", "properties", o.propsPrefix, "err", b.Err)
		return
	}
	o.mu.Lock()
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
	o.mu.Unlock()
	o.feed.Refilter()
}
