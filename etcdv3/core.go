package etcdv3

import (
	"sync"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/internal/pipeline"
	"github.com/etcdsd/etcdsd/internal/property"
)

// core is what the Instancers of one client and prefix share: the Feed of
// the instances, properties applied, which follows the client's shared
// Mirror of the prefix (and, through the overlay, that of the properties),
// so that the go-kit sd.Event list is built once per change for all of
// them. Its logs (malformed values, the Mirrors') go to the logger of
// every Instancer that holds it, once per distinct logger.
type core struct {
	key    coreKey
	shared bool // in cores; a client without identity gets a core of its own

	refs    int // guarded by cores.mu
	feed    *pipeline.Feed
	props   *pipeline.Feed // nil without properties
	taps    []*pipeline.Tap
	loggers pipeline.Loggers

	regsMu sync.Mutex              // orders the Feed's Register and Deregister of each channel
	regs   map[chan<- sd.Event]int // channel → Instancers it is registered through
}

type coreKey struct {
	client any
	prefix string
}

var cores = struct {
	mu sync.Mutex
	m  map[coreKey]*core
}{m: make(map[coreKey]*core)}

// acquireCore returns the core of c and prefix with one more reference,
// making it on the open Taps of the instances (inst) and of the
// properties (props, nil without properties) if there is none. m are the
// Instancers' metrics.
func acquireCore(c Client, prefix, propsPrefix string, inst, props *pipeline.Tap, m *pipeline.Metrics) *core {
	key := coreKey{client: c, prefix: prefix}
	shared := pipeline.ShareableClient(c)
	cores.mu.Lock()
	defer cores.mu.Unlock()
	if shared {
		if k := cores.m[key]; k != nil {
			k.refs++
			return k
		}
	}
	k := &core{key: key, shared: shared, refs: 1, regs: make(map[chan<- sd.Event]int)}
	logger := log.With(&k.loggers, "prefix", prefix)
	if props != nil {
		// The properties first: the overlay hides the instances until it
		// has read them, so that the first state already honours them.
		ov := property.NewOverlay(prefix, propsPrefix, pipeline.ParseValue, logger, pipeline.WithMetrics(m))
		k.feed, k.props = ov.Instances(), ov.Properties()
		pt := props.Dup(logger, nil)
		pt.Follow(k.props)
		k.taps = append(k.taps, pt)
	} else {
		k.feed = pipeline.NewFeed(pipeline.WithLogger(logger), pipeline.WithMetrics(m))
	}
	it := inst.Dup(logger, m)
	it.Follow(k.feed)
	k.taps = append(k.taps, it)
	if shared {
		cores.m[key] = k
	}
	return k
}

// release drops one reference; the last stops following the Mirrors and
// stops the Feeds.
func (k *core) release() {
	cores.mu.Lock()
	k.refs--
	last := k.refs == 0
	if last && k.shared && cores.m[k.key] == k {
		delete(cores.m, k.key)
	}
	cores.mu.Unlock()
	if !last {
		return
	}
	for _, t := range k.taps {
		t.Close()
	}
	k.feed.Stop()
	if k.props != nil {
		k.props.Stop()
	}
}

// register registers ch with the Feed for one more Instancer (again: for
// one that holds it already, which go-kit sends the current state again)
// and returns the wait for ch to be sent the current state. The Feed holds
// a channel once, however many Instancers it is registered through.
func (k *core) register(ch chan<- sd.Event, again bool) (wait func()) {
	k.regsMu.Lock()
	defer k.regsMu.Unlock()
	if !again {
		k.regs[ch]++
	}
	return k.feed.Enroll(ch)
}

// deregister drops ch for one Instancer that holds it; the last one
// deregisters it from the Feed.
func (k *core) deregister(ch chan<- sd.Event) {
	k.regsMu.Lock()
	defer k.regsMu.Unlock()
	if k.regs[ch]--; k.regs[ch] > 0 {
		return
	}
	delete(k.regs, ch)
	k.feed.Deregister(ch)
}
