package grpcsd

import (
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
)

// VersionBalancerName is the name under which the version balancer is
// registered with gRPC when the package is imported.
const VersionBalancerName = "etcdsd_version"

// VersionServiceConfig selects the version balancer; pass it to
// grpc.WithDefaultServiceConfig.
const VersionServiceConfig = `{"loadBalancingConfig":[{"` + VersionBalancerName + `":{}}]}`

func init() {
	balancer.Register(versionBuilder{})
}

// versionBuilder builds the version balancer: gRPC's endpointsharding with
// one pick_first child per endpoint (the structure of grpc-go's own
// round_robin), under a picker that groups the READY children by the version
// the resolver attached to their endpoint.
type versionBuilder struct{}

func (versionBuilder) Name() string { return VersionBalancerName }

func (versionBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &versionBalancer{ClientConn: cc}
	b.child = endpointsharding.NewBalancer(b, opts, balancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	return b
}

// versionBalancer sits between gRPC and endpointsharding: it passes the
// resolver's state down and replaces each picker coming up with a
// versionPicker over the same children.
type versionBalancer struct {
	// ClientConn is gRPC's; embedding it lets endpointsharding create
	// SubConns through it while UpdateState is intercepted below.
	balancer.ClientConn
	child balancer.Balancer
}

func (b *versionBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	return b.child.UpdateClientConnState(balancer.ClientConnState{
		// Lets pick_first children honour client-side health checking and
		// outlier detection when they are configured.
		ResolverState: pickfirst.EnableHealthListener(s.ResolverState),
	})
}

func (b *versionBalancer) ResolverError(err error) { b.child.ResolverError(err) }

// UpdateSubConnState is deprecated in gRPC and never called for SubConns
// created through endpointsharding.
func (b *versionBalancer) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {}

func (b *versionBalancer) Close() { b.child.Close() }

func (b *versionBalancer) ExitIdle() { b.child.ExitIdle() }

// UpdateState is called by endpointsharding with its aggregated state.
func (b *versionBalancer) UpdateState(s balancer.State) {
	b.ClientConn.UpdateState(balancer.State{
		ConnectivityState: s.ConnectivityState,
		Picker:            newVersionPicker(endpointsharding.ChildStatesFromPicker(s.Picker), s.Picker),
	})
}
