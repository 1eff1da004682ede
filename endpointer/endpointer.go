package endpointer

import (
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

	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/pipeline"
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
	od    *outliers // nil without ejection

	// What picks read, without a lock.
	all         *group
	groups      groupIndex // by groupKey: versions, metadata pairs, both, and compound selectors
	versionList atomic.Pointer[[]string]
	eps         atomic.Pointer[[]endpoint.Endpoint] // Endpoints, built on demand; nil after a change
	closed      atomic.Bool
	// srcErr is the Instancer's last error, nil after a good event; read
	// without the lock so that a failing pick never waits for an update.
	srcErr atomic.Pointer[error]

	sub       *pipeline.Subscription // when the Instancer has a Feed
	ch        chan sd.Event          // otherwise
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	mu sync.Mutex // guards the writer, and serialises changes
	writer
}

// feeder is an Instancer backed by etcdsd's pipeline, such as
// etcdv3.Instancer: its keyed changes are applied as they come, without
// the full lists of sd.Event.
type feeder interface {
	Feed() *pipeline.Feed
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
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
		writer: writer{
			values:   make(map[string]*member),
			entries:  make(map[string]*entry),
			failed:   make(map[*member]struct{}),
			versions: make(map[string]int),
			weighted: cfg.strategy == Weighted,
		},
	}
	e.endpoint = e.call
	if cfg.ejectAfter > 0 {
		e.od = newOutliers(&e.cfg, &e.logger)
	}
	e.all = newGroup(e.rng, nil, false)
	e.versionList.Store(new([]string))
	if cfg.subsetSize > 0 {
		e.subsets = newSubsets(cfg.subsetSize, cfg.clientID, e.touch)
	}
	if f, ok := instancer.(feeder); ok && f.Feed() != nil {
		// The first batch, the whole content, is pending at once.
		e.sub = f.Feed().Subscribe()
		e.apply(e.sub.Take())
		go e.follow()
		return e, nil
	}
	e.bad = make(map[string]struct{})
	e.ch = make(chan sd.Event, 1)
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
// its endpoint, without retry; an ejected instance is skipped (see
// WithEjection). The endpoint counts its calls in flight for LeastLoaded
// and its failures for ejection.
func (e *Endpointer) Pick(ctx context.Context) (endpoint.Endpoint, error) {
	g, s, err := e.candidates(ctx)
	if err != nil {
		e.cfg.metrics.countPickErr(err)
		return nil, err
	}
	count(e.cfg.metrics.Picks)
	// group.pick, with its fast path written out: it is too large to be
	// inlined, and the call costs picks about 2 ns.
	i := g.index(s, e.cfg.strategy, e.rng)
	en := s.at(i).entry.Load()
	if en.ejected() {
		en = g.repick(s, e.cfg.strategy, e.rng, nil, i)
	}
	return en.endpoint, nil
}

// Endpoints implements go-kit's sd.Endpointer: one endpoint per distinct
// address of the current instances (within the subset, if any), ordered by
// value, for use with go-kit's lb package. It returns the Instancer's last
// error only when there is no endpoint to return. The list is built on the
// first call after a change, O(n log n), and shared until the next.
func (e *Endpointer) Endpoints() ([]endpoint.Endpoint, error) {
	if e.closed.Load() {
		return nil, fmt.Errorf("endpointer: endpoints: %w", ErrClosed)
	}
	eps := e.eps.Load()
	if eps == nil {
		eps = e.buildEndpoints()
	}
	if len(*eps) == 0 {
		if err := e.sourceErr(); err != nil {
			return nil, fmt.Errorf("endpointer: endpoints: %w", err)
		}
	}
	return *eps, nil
}

func (e *Endpointer) buildEndpoints() *[]endpoint.Endpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	if eps := e.eps.Load(); eps != nil {
		return eps
	}
	var eps []endpoint.Endpoint
	seen := make(map[*entry]struct{})
	for _, m := range e.sortedMembers() {
		en := m.entry.Load()
		if _, ok := seen[en]; !ok {
			seen[en] = struct{}{}
			eps = append(eps, en.endpoint)
		}
	}
	e.eps.Store(&eps)
	return &eps
}

// Instances returns the parsed instances the Endpointer routes to now
// (within the subset, if any), ordered by value.
func (e *Endpointer) Instances() []instance.Instance {
	e.mu.Lock()
	defer e.mu.Unlock()
	ms := e.sortedMembers()
	out := make([]instance.Instance, len(ms))
	for i, m := range ms {
		out[i] = m.instance()
	}
	return out
}

// Close ends the subscription to the Instancer, stops the Endpointer's
// goroutine, waits for it, and closes every endpoint's io.Closer. Later
// calls fail with ErrClosed. Close is idempotent.
func (e *Endpointer) Close() {
	e.closeOnce.Do(func() {
		if e.sub != nil {
			e.sub.Close()
		} else {
			e.instancer.Deregister(e.ch)
		}
		close(e.quit)
		<-e.done
		if e.od != nil {
			e.od.close()
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		e.closed.Store(true)
		for _, en := range e.entries {
			en.flags.Or(retiredFlag)
			en.close()
		}
		for _, m := range e.values {
			if en := m.entry.Load(); en != nil {
				en.flags.Or(retiredFlag)
				en.close()
			}
		}
		for _, en := range e.retiring {
			en.close()
		}
		e.writer = writer{}
	})
}

// follow applies the Feed's batches until Close.
func (e *Endpointer) follow() {
	defer close(e.done)
	for {
		select {
		case <-e.sub.Ready():
			e.apply(e.sub.Take())
		case <-e.quit:
			return
		}
	}
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
	g, s, err := e.candidates(ctx)
	if err != nil {
		return nil, err
	}
	return g.pick(s, e.cfg.strategy, e.rng, avoid), nil
}

// candidates returns the group for ctx's selector and its non-empty slots.
func (e *Endpointer) candidates(ctx context.Context) (*group, *slots, error) {
	sel := fromContext(ctx)
	if !e.closed.Load() {
		g := e.all
		if sel != nil {
			if sel.err != nil {
				return nil, nil, sel.err
			}
			if !sel.empty() {
				g = e.lookup(sel)
			}
		}
		if g != nil {
			if s := g.cur.Load(); s.n > 0 {
				return g, s, nil
			}
		}
	}
	return nil, nil, e.pickErr(sel)
}

// lookup returns the group of a non-empty selector, nil when it has none.
func (e *Endpointer) lookup(sel *selector) *group {
	if g, ok := e.groups.load(sel.key, sel.hash); ok {
		return g
	}
	if sel.simple() {
		return nil
	}
	return e.compoundGroup(sel)
}

// pickErr explains why there is no candidate for sel.
func (e *Endpointer) pickErr(sel *selector) error {
	switch {
	case e.closed.Load():
		return fmt.Errorf("endpointer: pick: %w", ErrClosed)
	case e.all.cur.Load().n == 0:
		if err := e.sourceErr(); err != nil {
			return fmt.Errorf("endpointer: pick: %w (discovery: %w)", ErrNoEndpoints, err)
		}
		return fmt.Errorf("endpointer: pick: %w", ErrNoEndpoints)
	}
	return &NoMatchError{Version: sel.version, Metadata: slices.Clone(sel.metadata), Available: slices.Clone(*e.versionList.Load())}
}

func (e *Endpointer) sourceErr() error {
	if p := e.srcErr.Load(); p != nil {
		return *p
	}
	return nil
}
