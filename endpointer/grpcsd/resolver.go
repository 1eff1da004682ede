package grpcsd

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"google.golang.org/grpc/resolver"

	"github.com/etcdsd/etcdsd/instance"
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

// start makes the Instancer, reporting each failure to the ClientConn and
// retrying with capped exponential backoff and jitter until ctx ends.
func (r *etcdResolver) start(ctx context.Context) (sd.Instancer, bool) {
	wait := minRetry
	for {
		in, err := r.factory(ctx, r.prefix)
		if err == nil {
			return in, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		level.Warn(r.logger).Log("msg", "cannot watch prefix, retrying", "retry_in", wait, "err", err)
		r.cc.ReportError(fmt.Errorf("grpcsd: watch %q: %w", r.prefix, err))
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, false
		}
		wait = min(2*wait, maxRetry)
	}
}

// update hands one Instancer event to gRPC. An error is reported and the
// ClientConn keeps the last addresses; the next event without error carries
// the true state.
func (r *etcdResolver) update(ev sd.Event) {
	if ev.Err != nil {
		r.cc.ReportError(fmt.Errorf("grpcsd: watch %q: %w", r.prefix, ev.Err))
		return
	}
	state := r.state(ev.Instances)
	// A watch-based resolver ignores the error of UpdateState: resolving
	// again would give the same state, and the next change comes by itself.
	_ = r.cc.UpdateState(state)
}

// state parses the values into addresses and endpoints carrying the parsed
// instance. Malformed values are skipped (logged once each), and a second
// value with an address already seen is dropped.
func (r *etcdResolver) state(values []string) resolver.State {
	addrs := make([]resolver.Address, 0, len(values))
	eps := make([]resolver.Endpoint, 0, len(values))
	seen := make(map[string]bool, len(values))
	bad := make(map[string]bool)
	for _, v := range values {
		inst, err := instance.Parse(v)
		var addr string
		if err == nil {
			addr, err = dialAddress(inst.Address)
		}
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
