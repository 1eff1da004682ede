package grpcsd

import (
	"errors"
	"sync"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/base"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/connectivity"
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

	mu          sync.Mutex
	resolverErr error // the last resolver error, until the next good state
}

func (b *versionBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	b.setResolverErr(nil)
	return b.child.UpdateClientConnState(balancer.ClientConnState{
		// Lets pick_first children honour client-side health checking and
		// outlier detection when they are configured.
		ResolverState: pickfirst.EnableHealthListener(s.ResolverState),
	})
}

func (b *versionBalancer) ResolverError(err error) {
	b.setResolverErr(err)
	b.child.ResolverError(err)
}

func (b *versionBalancer) setResolverErr(err error) {
	b.mu.Lock()
	b.resolverErr = err
	b.mu.Unlock()
}

// UpdateSubConnState is deprecated in gRPC and never called for SubConns
// created through endpointsharding.
func (b *versionBalancer) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {}

func (b *versionBalancer) Close() { b.child.Close() }

func (b *versionBalancer) ExitIdle() { b.child.ExitIdle() }

// UpdateState is called by endpointsharding with its aggregated state.
// Without any endpoint, RPCs fail with an error that says so (and why, if
// the resolver reported an error) rather than endpointsharding's generic one.
// The error is deliberately not a status error: gRPC ends an RPC on a status
// error even with wait-for-ready, whereas on any other error from a picker
// in TRANSIENT_FAILURE it fails RPCs without wait-for-ready as Unavailable
// with its text and keeps wait-for-ready ones queued until an instance comes,
// as round_robin does.
func (b *versionBalancer) UpdateState(s balancer.State) {
	children := endpointsharding.ChildStatesFromPicker(s.Picker)
	if len(children) == 0 {
		b.mu.Lock()
		err := b.resolverErr
		b.mu.Unlock()
		noInstance := errors.New("grpcsd: no instance registered for the target")
		if err != nil {
			// The text only: gRPC would take a status error wrapped in the
			// resolver's error (an etcd client error, say) for the picker's.
			noInstance = errors.New("grpcsd: no instance resolved for the target: " + err.Error())
		}
		b.ClientConn.UpdateState(balancer.State{
			ConnectivityState: connectivity.TransientFailure,
			Picker:            base.NewErrPicker(noInstance),
		})
		return
	}
	b.ClientConn.UpdateState(balancer.State{
		ConnectivityState: s.ConnectivityState,
		Picker:            newVersionPicker(children, s.Picker),
	})
}
