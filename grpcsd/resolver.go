package grpcsd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"google.golang.org/grpc/resolver"

	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/backoff"
	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// Bounds of the backoff between attempts to start the Instancer.
const (
	minRetry = 50 * time.Millisecond
	maxRetry = 2 * time.Second
)

// etcdResolver follows one prefix for one ClientConn. Its goroutine starts
// the Instancer (retrying while etcd is unreachable), turns each sd.Event
// into a resolver.State, and stops the Instancer when Close cancels it.
type etcdResolver struct {
	prefix  string
	cc      resolver.ClientConn
	factory InstancerFactory
	logger  log.Logger

	cancel context.CancelFunc
	done   chan struct{}

	bad map[string]bool // malformed values already logged; goroutine-owned
}

func startResolver(prefix string, cc resolver.ClientConn, factory InstancerFactory, logger log.Logger) *etcdResolver {
	ctx, cancel := context.WithCancel(context.Background())
	r := &etcdResolver{
		prefix:  prefix,
		cc:      cc,
		factory: factory,
		logger:  logger,
		cancel:  cancel,
		done:    make(chan struct{}),
		bad:     make(map[string]bool),
	}
	go r.run(ctx)
	return r
}

// ResolveNow implements resolver.Resolver. The resolver follows a watch and
// always holds the latest state, so there is nothing to do.
func (r *etcdResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close implements resolver.Resolver: it stops the watch and waits for it.
func (r *etcdResolver) Close() {
	r.cancel()
	<-r.done
}

func (r *etcdResolver) run(ctx context.Context) {
	defer close(r.done)
	in, ok := r.start(ctx)
	if !ok {
		return
	}
	if s, ok := in.(interface{ Stop() }); ok {
		defer s.Stop()
	}
	if f, ok := in.(interface{ Feed() *pipeline.Feed }); ok {
		r.follow(ctx, f.Feed())
		return
	}
	// Capacity 1: Register may deliver the current state before returning.
	ch := make(chan sd.Event, 1)
	in.Register(ch)
	defer in.Deregister(ch)
	for {
		select {
		case ev := <-ch:
			r.update(ev)
		case <-ctx.Done():
			return
		}
	}
}

// follow applies the typed changes of an etcdsd Instancer's feed by key,
// each value parsed once upstream, and hands gRPC one state per coalesced
// batch (gRPC takes the whole address list each time).
func (r *etcdResolver) follow(ctx context.Context, feed *pipeline.Feed) {
	sub := feed.Subscribe()
	defer sub.Close()
	byKey := make(map[string]instance.Instance)
	for {
		select {
		case <-sub.Ready():
		case <-ctx.Done():
			return
		}
		b := sub.Take()
		if b.Reset {
			clear(byKey)
		}
		for _, ch := range b.Changes {
			if ch.Op == pipeline.Delete {
				delete(byKey, ch.Key)
			} else {
				byKey[ch.Key] = ch.Instance
			}
		}
		if b.Err != nil {
			r.cc.ReportError(watchError(r.prefix, b.Err))
			continue
		}
		keys := slices.Sorted(maps.Keys(byKey))
		insts := make([]instance.Instance, len(keys))
		for i, k := range keys {
			insts[i] = byKey[k]
		}
		// A watch-based resolver ignores the error of UpdateState:
		// resolving again would give the same state, and the next change
		// comes by itself.
		_ = r.cc.UpdateState(r.stateOf(insts, nil, make(map[string]bool)))
	}
}

// start makes the Instancer, reporting each failure to the ClientConn and
// retrying with capped exponential backoff and jitter until ctx ends.
func (r *etcdResolver) start(ctx context.Context) (sd.Instancer, bool) {
	b := backoff.New(minRetry, maxRetry)
	for {
		in, err := r.factory(ctx, r.prefix)
		if err == nil {
			return in, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		level.Warn(r.logger).Log("msg", "cannot watch prefix, retrying", "err", err)
		r.cc.ReportError(watchError(r.prefix, err))
		if !b.Sleep(ctx) {
			return nil, false
		}
	}
}

// update hands one Instancer event to gRPC. An error is reported and the
// ClientConn keeps the last addresses; the next event without error carries
// the true state.
func (r *etcdResolver) update(ev sd.Event) {
	if ev.Err != nil {
		r.cc.ReportError(watchError(r.prefix, ev.Err))
		return
	}
	state := r.state(ev.Instances)
	// A watch-based resolver ignores the error of UpdateState: resolving
	// again would give the same state, and the next change comes by itself.
	_ = r.cc.UpdateState(state)
}

// state parses the values of a go-kit event into a gRPC state. Malformed
// values are skipped (logged once each).
func (r *etcdResolver) state(values []string) resolver.State {
	insts := make([]instance.Instance, 0, len(values))
	from := make([]string, 0, len(values))
	bad := make(map[string]bool)
	for _, v := range values {
		inst, err := instance.Parse(v)
		if err != nil {
			if !r.bad[v] {
				level.Error(r.logger).Log("msg", "skipping malformed instance", "value", v, "err", err)
			}
			bad[v] = true
			continue
		}
		insts = append(insts, inst)
		from = append(from, v)
	}
	return r.stateOf(insts, from, bad)
}

// stateOf turns instances into addresses and endpoints carrying the parsed
// instance. An instance whose address gRPC cannot dial is skipped (logged
// once while it stays), and a second instance with an address already
// seen is dropped. from, when set, holds each instance's value for the
// logs; bad collects what was skipped, to log it once while it stays.
func (r *etcdResolver) stateOf(insts []instance.Instance, from []string, bad map[string]bool) resolver.State {
	addrs := make([]resolver.Address, 0, len(insts))
	eps := make([]resolver.Endpoint, 0, len(insts))
	seen := make(map[string]bool, len(insts))
	for i, inst := range insts {
		v := inst.Address
		if from != nil {
			v = from[i]
		}
		addr, err := dialAddress(inst.Address)
		if err != nil {
			if !r.bad[v] {
				level.Error(r.logger).Log("msg", "skipping malformed instance", "value", v, "err", err)
			}
			bad[v] = true
			continue
		}
		if seen[addr] {
			level.Debug(r.logger).Log("msg", "skipping instance with a duplicate address", "address", addr, "value", v)
			continue
		}
		seen[addr] = true
		attrs := instanceAttributes(inst)
		//lint:ignore SA1019 deprecated only for addresses inside an Endpoint; State.Addresses entries are not.
		addrs = append(addrs, resolver.Address{Addr: addr, BalancerAttributes: attrs})
		eps = append(eps, resolver.Endpoint{Addresses: []resolver.Address{{Addr: addr}}, Attributes: attrs})
	}
	r.bad = bad
	return resolver.State{Addresses: addrs, Endpoints: eps}
}

// watchError is what the resolver reports to gRPC when prefix cannot be
// watched: it names the prefix and matches cause under errors.Is, but it
// does not unwrap, so that a gRPC status inside cause (etcd's client errors
// may carry one) stays hidden. gRPC ends even a wait-for-ready RPC at a
// picker error with a status, and before the first state it takes the
// resolver's error as the picker's.
func watchError(prefix string, cause error) error {
	return &resolveError{msg: fmt.Sprintf("grpcsd: watch %q: %v", prefix, cause), cause: cause}
}

type resolveError struct {
	msg   string
	cause error
}

func (e *resolveError) Error() string { return e.msg }

// Is matches the cause, with no Unwrap for errors.As to reach a status by.
func (e *resolveError) Is(target error) bool { return errors.Is(e.cause, target) }
