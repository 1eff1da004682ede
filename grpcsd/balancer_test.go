package grpcsd

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"
)

// fakeBalancerCC records the states a balancer hands to gRPC.
type fakeBalancerCC struct {
	balancer.ClientConn
	states []balancer.State
}

func (cc *fakeBalancerCC) UpdateState(s balancer.State) { cc.states = append(cc.states, s) }

func (cc *fakeBalancerCC) lastPickErr(t *testing.T) error {
	t.Helper()
	if len(cc.states) == 0 {
		t.Fatal("no state sent")
	}
	s := cc.states[len(cc.states)-1]
	if s.ConnectivityState != connectivity.TransientFailure {
		t.Errorf("state = %v, want TransientFailure", s.ConnectivityState)
	}
	_, err := s.Picker.Pick(balancer.PickInfo{Ctx: context.Background()})
	return err
}

func TestVersionBalancerIsRegistered(t *testing.T) {
	if balancer.Get(VersionBalancerName) == nil {
		t.Fatalf("balancer %q not registered", VersionBalancerName)
	}
}

// TestVersionBalancerWithoutInstancesSaysWhy checks the error of an RPC
// while no instance is known. It must not be a status error: gRPC ends the
// RPC on one even with wait-for-ready, and turns any other error into
// Unavailable with its text for the RPCs without it.
func TestVersionBalancerWithoutInstancesSaysWhy(t *testing.T) {
	cc := &fakeBalancerCC{}
	b := balancer.Get(VersionBalancerName).Build(cc, balancer.BuildOptions{})
	defer b.Close()

	if err := b.UpdateClientConnState(balancer.ClientConnState{ResolverState: resolver.State{}}); err == nil {
		t.Error("UpdateClientConnState with no endpoint = nil, want ErrBadResolverState")
	}
	err := cc.lastPickErr(t)
	if _, isStatus := status.FromError(err); isStatus || err.Error() != "grpcsd: no instance registered for the target" {
		t.Errorf("empty state: pick err = %#v, want a plain error saying no instance is registered", err)
	}

	// Even when the resolver's error carries a gRPC status, as an etcd
	// client error may.
	b.ResolverError(fmt.Errorf("etcd unreachable: %w", status.Error(codes.PermissionDenied, "auth")))
	err = cc.lastPickErr(t)
	want := "grpcsd: no instance resolved for the target: etcd unreachable: rpc error: code = PermissionDenied desc = auth"
	if _, isStatus := status.FromError(err); isStatus || err.Error() != want {
		t.Errorf("after resolver error: pick err = %#v, want a plain error %q", err, want)
	}
}
