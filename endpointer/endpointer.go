package endpointer

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/etcdsd/etcdsd/instance"
)

// Endpointer subscribes to an sd.Instancer and serves one endpoint that
// picks an instance by strategy and selector, calls it, and retries on
// another instance on failure. It is safe for concurrent use.
type Endpointer struct {
	instancer sd.Instancer
	factory   sd.Factory
	logger    log.Logger
	cfg       config
	rng       *rng
	endpoint  endpoint.Endpoint // e.call, made once
	// sleep waits between attempts; tests replace it before the first call.
	sleep func(ctx context.Context, d time.Duration) error

	snap atomic.Pointer[snapshot]
	// srcErr is the Instancer's last error, nil after a good event; read
	// without the lock so that a failing pick never waits for an update.
	srcErr atomic.Pointer[error]

	ch        chan sd.Event
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex          // guards what follows, and serialises updates
	entries  map[string]*entry   // address → endpoint
	retiring []*entry            // retired, closing when their calls return
	parsed   map[string]*member  // value → member of the last update
	bad      map[string]struct{} // values that failed to parse, logged once
	closed   bool
}

var _ sd.Endpointer = (*Endpointer)(nil)

// New returns an Endpointer fed by instancer, whose endpoints come from
// factory; factory receives each instance's address (see the package
// comment). It fails, with an error wrapping ErrInvalid that names the bad
// value, for a nil instancer or factory and for a bad option. A nil logger
// logs nothing. When New returns, the instances the instancer had are
// ready for picks.
func New(instancer sd.Instancer, factory sd.Factory, logger log.Logger, opts ...Option) (*Endpointer, error) {
	if isNil(instancer) {
		return nil, fmt.Errorf("endpointer: new: %w: instancer is nil", ErrInvalid)
	}
	if factory == nil {
		return nil, fmt.Errorf("endpointer: new: %w: factory is nil", ErrInvalid)
	}
	if logger == nil {
		logger = log.NewNopLogger()
	}
	cfg := defaultConfig()
	for _, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("endpointer: new: %w: option is nil", ErrInvalid)
		}
		if err := opt(&cfg); err != nil {
			return nil, fmt.Errorf("endpointer: new: %w", err)
		}
	}
	if !cfg.seeded {
		cfg.seed = rand.Uint64()
	}
	e := &Endpointer{
		instancer: instancer,
		factory:   factory,
		logger:    logger,
		cfg:       cfg,
		rng:       newRNG(cfg.seed),
		sleep:     sleepContext,
		ch:        make(chan sd.Event, 1),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
		entries:   make(map[string]*entry),
		parsed:    make(map[string]*member),
		bad:       make(map[string]struct{}),
	}
	e.endpoint = e.call
	e.snap.Store(newSnapshot(nil, cfg.strategy, e.rng))
	// The channel has room for the state that Register delivers before it
	// returns, so it is applied here, before New returns.
	instancer.Register(e.ch)
	select {
	case ev := <-e.ch:
		e.update(ev)
	default:
	}
	go e.receive()
	return e, nil
}

// isNil reports whether v is nil or a nil pointer in an interface.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Chan, reflect.Func, reflect.Interface, reflect.Slice:
		return rv.IsNil()
	}
	return false
}

// Endpoint returns the endpoint that picks an instance for each request,
// calls it and retries on failure as configured by WithRetry, WithBackoff
// and WithRetryable. The error of a call that was not retried is the
// endpoint's own; after retries, or when the call's context ended, it is a
// *RetryError holding each attempt's error and the reason it stopped. Picking fails at once, without retry, with ErrNoEndpoints when
// there is no instance, with a *NoMatchError (wrapping ErrNoMatch) when the
// request's selector matches none, and with ErrClosed after Close.
func (e *Endpointer) Endpoint() endpoint.Endpoint {
	return e.endpoint
}

// Pick chooses one instance for a request with ctx's selector and returns
// its endpoint, without retry. The endpoint counts its calls in flight for
// LeastLoaded.
func (e *Endpointer) Pick(ctx context.Context) (endpoint.Endpoint, error) {
	s := e.snap.Load()
	g, err := e.candidates(s, ctx)
	if err != nil {
		return nil, err
	}
	return g.eps[g.index(s.strategy, e.rng)], nil
}

// Endpoints implements go-kit's sd.Endpointer: one endpoint per distinct
// address of the current instances (within the subset, if any), ordered by
// value, for use with go-kit's lb package. It returns the Instancer's last
// error only when there is no endpoint to return.
func (e *Endpointer) Endpoints() ([]endpoint.Endpoint, error) {
	s := e.snap.Load()
	if s.closed {
		return nil, fmt.Errorf("endpointer: endpoints: %w", ErrClosed)
	}
	if len(s.endpoints) == 0 {
		if err := e.sourceErr(); err != nil {
			return nil, fmt.Errorf("endpointer: endpoints: %w", err)
		}
	}
	return s.endpoints, nil
}

// Instances returns the parsed instances the Endpointer routes to now
// (within the subset, if any), ordered by value.
func (e *Endpointer) Instances() []instance.Instance {
	return e.snap.Load().instances()
}

// Close deregisters from the Instancer, stops the Endpointer's goroutine,
// waits for it, and closes every endpoint's io.Closer. Later calls fail
// with ErrClosed. Close is idempotent.
func (e *Endpointer) Close() {
	e.closeOnce.Do(func() {
		e.instancer.Deregister(e.ch)
		close(e.quit)
		<-e.done
		e.mu.Lock()
		defer e.mu.Unlock()
		e.closed = true
		e.snap.Store(&snapshot{closed: true})
		for _, en := range e.entries {
			en.retired.Store(true)
			en.close()
		}
		for _, en := range e.retiring {
			en.close()
		}
		e.entries, e.retiring, e.parsed = nil, nil, nil
	})
}

// receive applies events until Close.
func (e *Endpointer) receive() {
	defer close(e.done)
	for {
		select {
		case ev := <-e.ch:
			e.update(ev)
		case <-e.quit:
			return
		}
	}
}

// pick chooses an instance for ctx's selector, other than avoid when
// another candidate exists.
func (e *Endpointer) pick(ctx context.Context, avoid *entry) (*entry, error) {
	s := e.snap.Load()
	g, err := e.candidates(s, ctx)
	if err != nil {
		return nil, err
	}
	return g.pick(s.strategy, e.rng, avoid), nil
}

// candidates returns the non-empty group of s for ctx's selector.
func (e *Endpointer) candidates(s *snapshot, ctx context.Context) (*group, error) {
	g := s.all
	sel := fromContext(ctx)
	if sel != nil {
		if sel.err != nil {
			return nil, sel.err
		}
		if !sel.empty() {
			g = s.lookup(sel)
		}
	}
	if g == nil || len(g.entries) == 0 {
		return nil, e.pickErr(s, sel)
	}
	return g, nil
}

// pickErr explains why s has no candidate for sel.
func (e *Endpointer) pickErr(s *snapshot, sel *selector) error {
	switch {
	case s.closed:
		return fmt.Errorf("endpointer: pick: %w", ErrClosed)
	case len(s.members) == 0:
		if err := e.sourceErr(); err != nil {
			return fmt.Errorf("endpointer: pick: %w (discovery: %w)", ErrNoEndpoints, err)
		}
		return fmt.Errorf("endpointer: pick: %w", ErrNoEndpoints)
	}
	return &NoMatchError{Version: sel.version, Metadata: slices.Clone(sel.metadata), Available: slices.Clone(s.versions)}
}

func (e *Endpointer) sourceErr() error {
	if p := e.srcErr.Load(); p != nil {
		return *p
	}
	return nil
}

// update applies one event from the Instancer: it parses the values, keeps
// the subset, makes endpoints for new addresses, retires those of addresses
// gone, and publishes a new snapshot.
func (e *Endpointer) update(ev sd.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	if ev.Err != nil {
		if last := e.sourceErr(); last == nil || last.Error() != ev.Err.Error() {
			level.Warn(e.logger).Log("msg", "service discovery failed; keeping the last instances", "err", ev.Err)
		}
		e.srcErr.Store(&ev.Err)
		return
	}
	e.srcErr.Store(nil)

	members := e.parse(ev.Instances)
	if e.cfg.subsetSize > 0 {
		members = subset(members, e.cfg.subsetSize, e.cfg.clientID)
	}

	entries := make(map[string]*entry, len(members))
	kept := members[:0]
	for _, m := range members {
		en, ok := entries[m.inst.Address]
		if !ok {
			en, ok = e.entries[m.inst.Address]
		}
		if !ok {
			ep, closer, err := e.factory(m.inst.Address)
			if err != nil {
				level.Warn(e.logger).Log("msg", "factory failed; instance skipped until the next change", "address", m.inst.Address, "err", err)
				continue
			}
			en = newEntry(m.inst.Address, ep, closer, e.logger)
		}
		entries[m.inst.Address] = en
		m.entry = en
		kept = append(kept, m)
	}
	// Publish first, so that no new pick finds an endpoint retired below.
	e.snap.Store(newSnapshot(kept, e.cfg.strategy, e.rng))
	for addr, en := range e.entries {
		if _, ok := entries[addr]; !ok {
			en.retire()
			e.retiring = append(e.retiring, en)
		}
	}
	e.retiring = slices.DeleteFunc(e.retiring, func(en *entry) bool { return en.closed.Load() })
	e.entries = entries
}

// parse turns values into members sorted by value, reusing the members of
// the last update and logging each bad value once while it stays.
func (e *Endpointer) parse(values []string) []*member {
	parsed := make(map[string]*member, len(values))
	bad := make(map[string]struct{})
	members := make([]*member, 0, len(values))
	for _, v := range values {
		if _, dup := parsed[v]; dup {
			continue
		}
		if _, wasBad := e.bad[v]; wasBad {
			bad[v] = struct{}{}
			continue
		}
		m, ok := e.parsed[v]
		if ok {
			m = &member{value: v, inst: m.inst}
		} else {
			inst, err := instance.Parse(v)
			if err != nil {
				level.Warn(e.logger).Log("msg", "instance value skipped", "err", err)
				bad[v] = struct{}{}
				continue
			}
			m = &member{value: v, inst: inst}
		}
		parsed[v] = m
		members = append(members, m)
	}
	e.parsed, e.bad = parsed, bad
	slices.SortFunc(members, func(a, b *member) int { return cmp.Compare(a.value, b.value) })
	return members
}
