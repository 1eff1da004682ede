package grpcsd

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// slicePicker is the version picker we replace, as users write it: a mutex,
// and on every pick a new slice of the SubConns whose version matches.
type slicePicker struct {
	mu       sync.Mutex
	subConns []balancer.SubConn
	versions []string
	next     int
}

func (p *slicePicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, _ := VersionFromContext(info.Ctx)
	var match []balancer.SubConn
	for i, sc := range p.subConns {
		if v == "" || p.versions[i] == v {
			match = append(match, sc)
		}
	}
	if len(match) == 0 {
		return balancer.PickResult{}, status.Error(codes.Unavailable, "no match found conn")
	}
	p.next = (p.next + 1) % len(match)
	return balancer.PickResult{SubConn: match[p.next]}, nil
}

// benchPickers returns both pickers over n READY servers, half v1, half v2;
// ours weighs them 1 to 4 (the mutex-slice picker has no weights).
func benchPickers(n int) (etcdsd, slice balancer.Picker) {
	children := make([]endpointsharding.ChildState, n)
	sp := &slicePicker{}
	for i := range n {
		v := fmt.Sprintf("v%d", i%2+1)
		children[i] = weightedChild(fmt.Sprintf("s%d", i), v, i%4+1, connectivity.Ready)
		sp.subConns = append(sp.subConns, &fakeSubConn{name: fmt.Sprintf("s%d", i)})
		sp.versions = append(sp.versions, v)
	}
	return newVersionPicker(children, nil), sp
}

// BenchmarkPick compares the cost of one pick: etcdsd's precomputed groups
// against a mutex-and-slice picker, for 16 servers, with and without a
// version (from WithVersion or from the outgoing metadata), on one
// goroutine and on all.
func BenchmarkPick(b *testing.B) {
	ours, theirs := benchPickers(16)
	for _, p := range []struct {
		name   string
		picker balancer.Picker
	}{{"etcdsd", ours}, {"mutex-slice", theirs}} {
		for _, c := range []struct {
			name string
			ctx  context.Context
		}{
			{"any", context.Background()},
			{"version", WithVersion(context.Background(), "v2")},
			{"metadata", metadata.AppendToOutgoingContext(context.Background(), MetadataKey, "v2")},
		} {
			info := balancer.PickInfo{FullMethodName: "/svc/M", Ctx: c.ctx}
			b.Run(fmt.Sprintf("picker=%s/ctx=%s/serial", p.name, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := p.picker.Pick(info); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("picker=%s/ctx=%s/parallel", p.name, c.name), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := p.picker.Pick(info); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
