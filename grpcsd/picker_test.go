package grpcsd

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/etcdsd/etcdsd/instance"
)

// fakeSubConn names the child a pick went to.
type fakeSubConn struct {
	balancer.SubConn
	name string
}

// childPicker is a READY pick_first child: it always picks its SubConn.
type childPicker struct{ sc *fakeSubConn }

func (p childPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{SubConn: p.sc}, nil
}

// errPicker is a child that is not READY.
type errPicker struct{ err error }

func (p errPicker) Pick(balancer.PickInfo) (balancer.PickResult, error) {
	return balancer.PickResult{}, p.err
}

func child(name, version string, state connectivity.State) endpointsharding.ChildState {
	return weightedChild(name, version, 0, state)
}

// weightedChild is child with the instance weight w (0: unset).
func weightedChild(name, version string, w int, state connectivity.State) endpointsharding.ChildState {
	var p balancer.Picker = childPicker{&fakeSubConn{name: name}}
	switch state {
	case connectivity.TransientFailure:
		p = errPicker{status.Errorf(codes.Unavailable, "%s: connection refused", name)}
	case connectivity.Connecting, connectivity.Idle:
		p = errPicker{balancer.ErrNoSubConnAvailable}
	}
	inst := instance.Instance{ID: name, Version: version, Address: name + ":1", Weight: w}
	return endpointsharding.ChildState{
		Endpoint: resolver.Endpoint{Addresses: []resolver.Address{{Addr: inst.Address}}, Attributes: instanceAttributes(inst)},
		State:    balancer.State{ConnectivityState: state, Picker: p},
	}
}

// picks returns how many of n picks went to each child.
func picks(t *testing.T, p balancer.Picker, ctx context.Context, n int) map[string]int {
	t.Helper()
	got := make(map[string]int)
	for range n {
		res, err := p.Pick(balancer.PickInfo{Ctx: ctx})
		if err != nil {
			t.Fatalf("pick: %v", err)
		}
		got[res.SubConn.(*fakeSubConn).name]++
	}
	return got
}

func threeServers() []endpointsharding.ChildState {
	return []endpointsharding.ChildState{
		child("a", "v1", connectivity.Ready),
		child("b", "v1", connectivity.Ready),
		child("c", "v2", connectivity.Ready),
	}
}

func TestPickerWithoutVersionUsesAllReadyRoundRobin(t *testing.T) {
	children := append(threeServers(), child("d", "v2", connectivity.Connecting))
	p := newVersionPicker(children, errPicker{errors.New("fallback used")})
	got := picks(t, p, context.Background(), 300)
	if got["a"] != 100 || got["b"] != 100 || got["c"] != 100 || len(got) != 3 {
		t.Errorf("picks = %v, want 100 each on a, b, c", got)
	}
}

func TestPickerRoutesByContextVersion(t *testing.T) {
	p := newVersionPicker(threeServers(), nil)
	if got := picks(t, p, WithVersion(context.Background(), "v1"), 100); got["a"] != 50 || got["b"] != 50 || len(got) != 2 {
		t.Errorf("v1 picks = %v, want 50 each on a and b", got)
	}
	if got := picks(t, p, WithVersion(context.Background(), "v2"), 10); got["c"] != 10 || len(got) != 1 {
		t.Errorf("v2 picks = %v, want all on c", got)
	}
}

func TestPickerRoutesByOutgoingMetadata(t *testing.T) {
	p := newVersionPicker(threeServers(), nil)
	ctx := metadata.AppendToOutgoingContext(context.Background(), MetadataKey, "v2")
	if got := picks(t, p, ctx, 10); got["c"] != 10 || len(got) != 1 {
		t.Errorf("picks = %v, want all on c", got)
	}
}

func TestPickerNoMatchNamesWantedAndAvailableVersions(t *testing.T) {
	p := newVersionPicker(threeServers(), nil)
	_, err := p.Pick(balancer.PickInfo{Ctx: WithVersion(context.Background(), "v3")})
	// A plain error: gRPC fails an RPC at it with Unavailable (checked end
	// to end in integration/grpcsd) but lets a wait-for-ready RPC wait,
	// where a status would end it.
	if _, isStatus := status.FromError(err); err == nil || isStatus {
		t.Fatalf("Pick = %v, want a plain error", err)
	}
	want := `grpcsd: no instance with version "v3" (versions available: "v1", "v2")`
	if msg := err.Error(); msg != want {
		t.Errorf("message = %q, want %q", msg, want)
	}
}

func TestPickerNoInstancesAtAllSaysNone(t *testing.T) {
	p := newVersionPicker(nil, errPicker{errors.New("no children to pick from")})
	_, err := p.Pick(balancer.PickInfo{Ctx: WithVersion(context.Background(), "v1")})
	if !strings.Contains(err.Error(), "versions available: none") {
		t.Errorf("err = %v, want it to say no version is available", err)
	}
}

func TestPickerWaitsWhileVersionIsConnecting(t *testing.T) {
	p := newVersionPicker([]endpointsharding.ChildState{
		child("a", "v1", connectivity.Ready),
		child("b", "v2", connectivity.Connecting),
		child("c", "v2", connectivity.TransientFailure),
	}, nil)
	_, err := p.Pick(balancer.PickInfo{Ctx: WithVersion(context.Background(), "v2")})
	if !errors.Is(err, balancer.ErrNoSubConnAvailable) {
		t.Errorf("err = %v, want ErrNoSubConnAvailable (the RPC waits for b)", err)
	}
}

func TestPickerFailsWithChildErrorWhenVersionIsDown(t *testing.T) {
	p := newVersionPicker([]endpointsharding.ChildState{
		child("a", "v1", connectivity.Ready),
		child("c", "v2", connectivity.TransientFailure),
	}, nil)
	_, err := p.Pick(balancer.PickInfo{Ctx: WithVersion(context.Background(), "v2")})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "c: connection refused") {
		t.Errorf("err = %v, want the failing child's Unavailable error", err)
	}
}

func TestPickerWithoutReadyChildDefersToFallback(t *testing.T) {
	fallback := errPicker{balancer.ErrNoSubConnAvailable}
	p := newVersionPicker([]endpointsharding.ChildState{child("a", "v1", connectivity.Connecting)}, fallback)
	if _, err := p.Pick(balancer.PickInfo{Ctx: context.Background()}); !errors.Is(err, balancer.ErrNoSubConnAvailable) {
		t.Errorf("err = %v, want the fallback's", err)
	}
}

func TestPickerInstancesWithoutVersionFormTheirOwnGroup(t *testing.T) {
	p := newVersionPicker([]endpointsharding.ChildState{
		child("a", "", connectivity.Ready),
		child("b", "v1", connectivity.Ready),
	}, nil)
	_, err := p.Pick(balancer.PickInfo{Ctx: WithVersion(context.Background(), "v2")})
	if !strings.Contains(err.Error(), `versions available: "", "v1"`) {
		t.Errorf("err = %v, want the unversioned instance listed as \"\"", err)
	}
}

func TestPickerFollowsWeights(t *testing.T) {
	p := newVersionPicker([]endpointsharding.ChildState{
		weightedChild("a", "v1", 9, connectivity.Ready),
		weightedChild("b", "v1", 1, connectivity.Ready),
		weightedChild("c", "v2", 3, connectivity.Ready),
		weightedChild("d", "v2", 0, connectivity.Ready), // unset: 1
	}, nil)
	if got := picks(t, p, WithVersion(context.Background(), "v1"), 1000); got["a"] != 900 || got["b"] != 100 || len(got) != 2 {
		t.Errorf("v1 picks = %v, want 900 on a (weight 9) and 100 on b (weight 1)", got)
	}
	if got := picks(t, p, WithVersion(context.Background(), "v2"), 400); got["c"] != 300 || got["d"] != 100 || len(got) != 2 {
		t.Errorf("v2 picks = %v, want 300 on c (weight 3) and 100 on d (unset weight)", got)
	}
	if got := picks(t, p, context.Background(), 1400); got["a"] != 900 || got["b"] != 100 || got["c"] != 300 || got["d"] != 100 {
		t.Errorf("picks without version = %v, want 900, 100, 300, 100 on a, b, c, d", got)
	}
}

func TestPickerSpreadsWeightedPicks(t *testing.T) {
	p := newVersionPicker([]endpointsharding.ChildState{
		weightedChild("a", "v1", 9, connectivity.Ready),
		weightedChild("b", "v1", 1, connectivity.Ready),
	}, nil)
	// Every 10 picks in a row hold exactly one of b: its share is spread,
	// not served as a burst once a's nine are done.
	for i := range 20 {
		if got := picks(t, p, context.Background(), 10); got["b"] != 1 {
			t.Fatalf("window %d: picks = %v, want exactly 1 on b", i, got)
		}
	}
}

func TestPickerDoesNotAllocate(t *testing.T) {
	p := newVersionPicker(append(threeServers(), weightedChild("w", "v1", 7, connectivity.Ready)), nil)
	for name, ctx := range map[string]context.Context{
		"no version":   context.Background(),
		"with version": WithVersion(context.Background(), "v1"),
	} {
		info := balancer.PickInfo{FullMethodName: "/svc/M", Ctx: ctx}
		allocs := testing.AllocsPerRun(1000, func() {
			if _, err := p.Pick(info); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per pick, want 0", name, allocs)
		}
	}
}
