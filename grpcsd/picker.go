package grpcsd

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/connectivity"
)

// versionPicker routes each RPC to the READY children of the version its
// context asks for, weighted round robin by the instances' effective
// weights (the registered weight, or the operator's override, which the
// Instancer already applied). Everything is grouped when the picker is
// built, so that a pick costs an atomic add, a multiplication, a binary
// search and a map lookup, and no allocation.
type versionPicker struct {
	all       group             // every READY child
	versions  map[string]*group // version → its children
	available string            // the versions, quoted and sorted, for errors
	fallback  balancer.Picker   // endpointsharding's picker, when none is READY
}

// group is the children of one version. Its READY children share a cycle
// of total-weight picks, child i taking the upTo[i-1]..upTo[i] slots; pick
// n takes slot n×stride mod total. stride is coprime with the total, so
// every cycle gives each child exactly its weight, and close to total/φ,
// so that consecutive picks land far apart and a child's share is spread
// over the cycle rather than served in one burst.
type group struct {
	ready   []balancer.Picker
	upTo    []uint64 // upTo[i]: the weights of ready[0..i] summed
	stride  uint64
	next    atomic.Uint64
	waiting bool            // a child is connecting or idle: the RPC waits
	failing balancer.Picker // a child in transient failure, for its error
}

func newVersionPicker(children []endpointsharding.ChildState, fallback balancer.Picker) *versionPicker {
	p := &versionPicker{versions: make(map[string]*group), fallback: fallback}
	for _, c := range children {
		var version string
		weight := uint64(1)
		if inst, ok := InstanceFromEndpoint(c.Endpoint); ok {
			version, weight = inst.Version, uint64(inst.EffectiveWeight())
		}
		g := p.versions[version]
		if g == nil {
			g = new(group)
			p.versions[version] = g
		}
		switch c.State.ConnectivityState {
		case connectivity.Ready:
			g.add(c.State.Picker, weight)
			p.all.add(c.State.Picker, weight)
		case connectivity.Connecting, connectivity.Idle:
			g.waiting = true
		case connectivity.TransientFailure:
			if g.failing == nil {
				g.failing = c.State.Picker
			}
		}
	}
	names := make([]string, 0, len(p.versions))
	for v := range p.versions {
		names = append(names, strconv.Quote(v))
	}
	slices.Sort(names)
	p.available = strings.Join(names, ", ")
	if p.available == "" {
		p.available = "none"
	}
	p.all.seal()
	for _, g := range p.versions {
		g.seal()
	}
	return p
}

// Pick implements balancer.Picker.
func (p *versionPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	v, ok := VersionFromContext(info.Ctx)
	if !ok {
		if len(p.all.ready) == 0 {
			return p.fallback.Pick(info)
		}
		return p.all.pick(info)
	}
	g := p.versions[v]
	if g == nil {
		// A plain error, not a status: gRPC fails an RPC at it with
		// Unavailable, but lets a wait-for-ready RPC wait for the
		// version's first instance (a rollout under way).
		return balancer.PickResult{}, fmt.Errorf("grpcsd: no instance with version %q (versions available: %s)", v, p.available)
	}
	switch {
	case len(g.ready) > 0:
		return g.pick(info)
	case g.failing != nil && !g.waiting:
		return g.failing.Pick(info)
	default:
		return balancer.PickResult{}, balancer.ErrNoSubConnAvailable
	}
}

func (g *group) add(p balancer.Picker, weight uint64) {
	var sum uint64
	if n := len(g.upTo); n > 0 {
		sum = g.upTo[n-1]
	}
	g.ready = append(g.ready, p)
	g.upTo = append(g.upTo, sum+weight)
}

// seal sets the stride once every child is in, and starts the cycle at a
// random place so that many clients do not all begin with the same server.
func (g *group) seal() {
	if len(g.upTo) == 0 {
		return
	}
	total := g.upTo[len(g.upTo)-1]
	g.stride = max(uint64(float64(total)*(1/phi)), 1)
	for gcd(g.stride, total) != 1 {
		g.stride++
	}
	g.next.Store(rand.Uint64())
}

// phi is the golden ratio, whose multiples spread most evenly modulo 1.
const phi = 1.618033988749895

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func (g *group) pick(info balancer.PickInfo) (balancer.PickResult, error) {
	total := g.upTo[len(g.upTo)-1]
	// The product takes 128 bits: a total weight may exceed 2^32.
	hi, lo := bits.Mul64(g.next.Add(1)%total, g.stride)
	slot := bits.Rem64(hi, lo, total)
	i, _ := slices.BinarySearch(g.upTo, slot+1)
	return g.ready[i].Pick(info)
}
