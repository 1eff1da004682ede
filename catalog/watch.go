package catalog

import (
	"context"
	"fmt"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// maxQueued is how many events a started Watch holds for a slow reader
// before it stops taking more from its mirrors (their batches then wait in
// the Watch's own queues of the shared mirrors; nothing is dropped).
const maxQueued = 1024

// EventType says what happened to a key: Put (created or modified) or
// Delete.
type EventType uint8

// Event types.
const (
	Put EventType = iota + 1
	Delete
)

// String returns "put" or "delete".
func (t EventType) String() string {
	switch t {
	case Put:
		return "put"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// eventType is the EventType of a pipeline change.
func eventType(op pipeline.Op) EventType {
	if op == pipeline.Delete {
		return Delete
	}
	return Put
}

// Kind says what an Event is about.
type Kind int

// Kinds of events.
const (
	// KindInstance: an instance written by a service provider.
	KindInstance Kind = iota + 1
	// KindProperty: a property written by an operator.
	KindProperty
)

func (k Kind) String() string {
	switch k {
	case KindInstance:
		return "instance"
	case KindProperty:
		return "property"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Event is one typed change seen by Watch.
type Event struct {
	Type    EventType
	Kind    Kind
	Service string
	// ID is the instance id; empty for a service-wide property.
	ID string
	// Instance is set for KindInstance: the new instance, or for Delete
	// the one deleted.
	Instance *Instance
	// Property is set for KindProperty: the new property, or for Delete
	// the one removed.
	Property *Property
	// Revision is the etcd revision of the change (of the snapshot for a
	// deletion found by a resync). Events of one kind come in revision
	// order; changes made in one etcd transaction share a revision.
	Revision int64
	// Resync is set for changes found by comparing a fresh snapshot with
	// what the watch had seen (at start, after compaction or an outage)
	// rather than seen one by one. They are the net difference: a key
	// changed several times while the watch was cut off gives one event,
	// and a change made and undone then gives none.
	Resync bool
	// Err is set, alone, once per outage of the kind's watch: etcd cannot
	// be read and the watch retries with backoff. Revision is the last one
	// the kind's events reflect.
	Err error
	// Recovered is set, alone, with WatchRecoveries only, once the kind's
	// watch reads etcd again after an Err event: Revision is that of the
	// fresh snapshot it resumed from. The net difference found by that
	// snapshot follows (events with Resync set and Revision at most this
	// one), then every change after it.
	Recovered bool
}

// WatchOption narrows a Watch.
type WatchOption func(*watchConfig)

type watchConfig struct {
	namePrefix string
	exact      bool
	recoveries bool
}

// WatchService watches one service only.
func WatchService(name string) WatchOption {
	return func(c *watchConfig) { c.namePrefix, c.exact = name, true }
}

// WatchServicePrefix watches the services whose names start with prefix.
func WatchServicePrefix(prefix string) WatchOption {
	return func(c *watchConfig) { c.namePrefix, c.exact = prefix, false }
}

// WatchRecoveries has Watch also send an event with Recovered set when a
// kind's watch reads etcd again after an outage (an event with Err), so
// that a reader can say when the outage ended. Without it, no such event
// is sent: readers written before it see no new kind of event.
func WatchRecoveries() WatchOption {
	return func(c *watchConfig) { c.recoveries = true }
}

// Watch follows instances and properties (of every service, unless an
// option narrows it) and sends typed events on the returned channel: first
// the current content as Put events with Resync set, then every change.
// It is built on etcdsd's pipeline, one mirror of instances and one of
// properties: no gap between the first read and the watch, resume from the
// last revision after a broken watch, and after compaction or an outage a
// fresh snapshot whose net difference comes as events (changes made and
// undone while cut off are not replayed). While etcd cannot be read, each
// kind sends one event with Err, and, with WatchRecoveries, one with
// Recovered once it reads etcd again. An outage shorter than the client's
// dial timeout that clientv3 rides out (it reconnects the watch stream and
// resumes at the next revision, so nothing is missed) sends neither.
//
// Ordering: the events of one Kind come in etcd revision order
// (non-decreasing: one transaction's changes share a revision), each
// change seen by the watch once; events of the two kinds are interleaved
// as they arrive, so compare Revision to order them against each other.
// Applied to the first state, the events up to the last of a revision give
// etcd's state at that revision; the history checker (integration/history,
// docs/reliability.md) holds Watch to this.
// Instances and properties that do not parse are logged once and skipped;
// an instance whose value becomes malformed is reported deleted.
//
// Events are never dropped or coalesced: the current content is queued
// whole, however large, and after it a reader that falls more than about a
// thousand events behind holds back this Watch alone until it catches up:
// what etcd sends meanwhile waits, without bound (as etcd's client holds
// the responses of a watch nobody reads), in the Watch's own queue,
// and the other consumers of the prefix on the client (Instancers,
// endpointers, resolvers, Pools, other Watches) go on.
// The channel is closed, and every goroutine ended, after ctx ends. Watch
// fails if etcd cannot be read at start (within ctx, or
// etcdv3.DefaultRequestTimeout without a deadline), if ctx ends before it
// has read both kinds, or for a bad name.
func (c *Catalog) Watch(ctx context.Context, opts ...WatchOption) (<-chan Event, error) {
	var cfg watchConfig
	for _, o := range opts {
		o(&cfg)
	}
	instPrefix, propsPrefix := c.layout.root+cfg.namePrefix, c.layout.props+cfg.namePrefix
	if cfg.exact {
		if err := checkSegment("service name", cfg.namePrefix); err != nil {
			return nil, fmt.Errorf("catalog: watch: %w", err)
		}
		instPrefix, propsPrefix = c.layout.servicePrefix(cfg.namePrefix), c.layout.propsPrefix(cfg.namePrefix)
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &watch{
		ctx:        wctx,
		layout:     c.layout,
		logger:     c.logger,
		recoveries: cfg.recoveries,
		updates:    make(chan []Event),
		out:        make(chan Event),
		started:    make(chan struct{}),
		pumped:     make(chan struct{}),
	}
	go w.pump()
	fail := func(taps []*pipeline.Tap, err error) (<-chan Event, error) {
		// Cancel first: Close waits for a handler, which returns on it.
		cancel()
		for _, t := range taps {
			t.Close()
		}
		<-w.pumped
		return nil, fmt.Errorf("catalog: watch: %w", err)
	}
	readCtx, readCancel := bound(ctx)
	defer readCancel()
	inst, err := c.mirror(readCtx, instPrefix, KindInstance, pipeline.WithObserver(w.handler(KindInstance)))
	if err != nil {
		return fail(nil, err)
	}
	props, err := c.mirror(readCtx, propsPrefix, KindProperty, pipeline.WithObserver(w.handler(KindProperty)))
	if err != nil {
		return fail([]*pipeline.Tap{inst}, err)
	}
	// A channel that would close with nothing on it is no start: the
	// reader learns why instead.
	if err := ctx.Err(); err != nil {
		return fail([]*pipeline.Tap{inst, props}, err)
	}
	close(w.started)
	go func() {
		<-wctx.Done()
		inst.Close()
		props.Close()
		<-w.pumped
		close(w.out)
	}()
	return w.out, nil
}

// watch is the state of one Watch: the mirrors' handlers hand batches of
// events to pump, which queues them for the reader of out.
type watch struct {
	ctx        context.Context
	layout     layout
	logger     log.Logger
	recoveries bool // send Recovered events
	updates    chan []Event
	out        chan Event
	// started is closed once Watch has read both kinds and hands out the
	// channel. Until then pump takes every batch however long its queue:
	// Watch waits for each mirror to hand over its snapshot, and with
	// nobody reading yet a bounded queue would block Watch for good.
	started chan struct{}
	pumped  chan struct{} // closed when pump ends
}

// handler turns a mirror's batches into events and hands them to pump.
// The Feed has already decoded and validated each value, and ordered a
// resync's changes by revision.
func (w *watch) handler(kind Kind) func(pipeline.Batch) {
	failing := false // an Err event was the last news of this kind
	return func(b pipeline.Batch) {
		var events []Event
		if b.Err != nil {
			failing = true
			events = []Event{{Kind: kind, Revision: b.Rev, Err: b.Err}}
		} else {
			events = make([]Event, 0, len(b.Changes)+1)
			if failing && w.recoveries {
				events = append(events, Event{Kind: kind, Revision: b.Rev, Recovered: true})
			}
			failing = false
			for _, ch := range b.Changes {
				ev, err := w.event(kind, ch)
				if err != nil {
					level.Warn(w.logger).Log("msg", "watch: skipping malformed "+kind.String(), "err", err)
					continue
				}
				ev.Resync = b.Resync
				events = append(events, ev)
			}
		}
		if len(events) == 0 {
			return
		}
		select {
		case w.updates <- events:
		case <-w.ctx.Done():
		}
	}
}

// event types one change; for a deletion, the value deleted.
func (w *watch) event(kind Kind, ch pipeline.Change) (Event, error) {
	ev := Event{Type: eventType(ch.Op), Kind: kind, Revision: ch.Rev}
	switch kind {
	case KindInstance:
		inst := ch.Instance
		ev.Service, ev.ID, ev.Instance = inst.Name, inst.ID, &inst
	case KindProperty:
		p, err := w.layout.decodeProperty(ch.Key, ch.Value)
		if err != nil {
			return Event{}, err
		}
		ev.Service, ev.ID, ev.Property = p.Service, p.ID, &p
	}
	return ev, nil
}

// pump queues batches from the handlers and sends them to the reader in
// order, until the watch's context ends.
func (w *watch) pump() {
	defer close(w.pumped)
	var queue []Event
	starting := w.started // nil once closed
	for {
		if starting != nil {
			// The start first: a select would pick at random between it
			// and a batch, and take more than the limit after the start.
			select {
			case <-starting:
				starting = nil
			default:
			}
		}
		in := w.updates
		if len(queue) >= maxQueued && starting == nil {
			in = nil // hold the mirrors back until the reader catches up
		}
		var out chan<- Event
		var next Event
		if len(queue) > 0 {
			out, next = w.out, queue[0]
		}
		select {
		case <-starting:
			starting = nil
		case batch := <-in:
			queue = append(queue, batch...)
		case out <- next:
			queue[0] = Event{}
			queue = queue[1:]
		case <-w.ctx.Done():
			return
		}
	}
}
