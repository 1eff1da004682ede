package grpcsd

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// versionPicker routes each RPC to the READY children of the version its
// context asks for, round robin. Everything is grouped when the picker is
// built, so that a pick costs an atomic add and a map lookup, and no
// allocation.
type versionPicker struct {
	all       group             // every READY child
	versions  map[string]*group // version → its children
	available string            // the versions, quoted and sorted, for errors
	fallback  balancer.Picker   // endpointsharding's picker, when none is READY
}

// group is the children of one version.
type group struct {
	ready   []balancer.Picker
	next    atomic.Uint32
	waiting bool            // a child is connecting or idle: the RPC waits
	failing balancer.Picker // a child in transient failure, for its error
}

func newVersionPicker(children []endpointsharding.ChildState, fallback balancer.Picker) *versionPicker {
	p := &versionPicker{versions: make(map[string]*group), fallback: fallback}
	for _, c := range children {
		var version string
		if inst, ok := InstanceFromEndpoint(c.Endpoint); ok {
			version = inst.Version
		}
		g := p.versions[version]
		if g == nil {
			g = new(group)
			p.versions[version] = g
		}
		switch c.State.ConnectivityState {
		case connectivity.Ready:
			g.ready = append(g.ready, c.State.Picker)
			p.all.ready = append(p.all.ready, c.State.Picker)
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
	// Start each rotation at a random place so that many clients do not
	// all begin with the same server.
	p.all.next.Store(rand.Uint32())
	for _, g := range p.versions {
		g.next.Store(rand.Uint32())
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
		return balancer.PickResult{}, status.Errorf(codes.Unavailable,
			"grpcsd: no instance with version %q (versions available: %s)", v, p.available)
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

func (g *group) pick(info balancer.PickInfo) (balancer.PickResult, error) {
	n := g.next.Add(1)
	return g.ready[n%uint32(len(g.ready))].Pick(info)
}
