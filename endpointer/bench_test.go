package endpointer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/go-kit/kit/sd/lb"
	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// The peers, side by side with etcdsd in every benchmark:
//   - gokit: go-kit's lb.NewRoundRobin / lb.NewRandom over an
//     sd.FixedEndpointer, and lb.Retry for whole calls;
//   - mutex-slice: the version picker of the widely copied etcd + gRPC
//     example: lock, filter a new slice by the version in the context,
//     pick round robin, unlock.
//
// Run: go test -run '^$' -bench . -benchmem -count 6 ./endpointer

const benchInstances = 1000

// benchVersions spreads the instances over four versions, 250 each.
var benchVersions = []string{"v1", "v2", "v3", "v4"}

func nopEndpoint(context.Context, any) (any, error) { return nil, nil }

func nopFactory(string) (endpoint.Endpoint, io.Closer, error) { return nopEndpoint, nil, nil }

// benchValues returns n JSON values over benchVersions with weights 1..4.
func benchValues(n int) []string {
	out := make([]string, n)
	for i := range out {
		in := instance.Instance{
			ID:       fmt.Sprintf("app-%d", i),
			Address:  fmt.Sprintf("10.0.%d.%d:8080", i/256, i%256),
			Version:  benchVersions[i%len(benchVersions)],
			Metadata: map[string]string{"zone": fmt.Sprintf("z%d", i%3)},
			Weight:   1 + i%4,
		}
		out[i], _ = in.Encode()
	}
	return out
}

func benchEndpointer(b *testing.B, st Strategy) *Endpointer {
	b.Helper()
	src := source(b, benchValues(benchInstances)...)
	e, err := New(src, nopFactory, log.NewNopLogger(), WithStrategy(st))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.Close)
	if n := len(e.Instances()); n != benchInstances {
		b.Fatalf("%d instances", n)
	}
	return e
}

// peerVersionKey is the example's context key (a bare string there; typed
// here only to satisfy vet).
type peerVersionKey struct{}

type peerConn struct {
	version string
	ep      endpoint.Endpoint
}

// mutexSlicePicker is the widely copied version picker.
type mutexSlicePicker struct {
	mu    sync.Mutex
	conns []peerConn
	next  int
}

func newMutexSlicePicker(n int) *mutexSlicePicker {
	p := &mutexSlicePicker{}
	for i := range n {
		p.conns = append(p.conns, peerConn{version: benchVersions[i%len(benchVersions)], ep: nopEndpoint})
	}
	return p
}

func (p *mutexSlicePicker) Pick(ctx context.Context) (endpoint.Endpoint, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	version, _ := ctx.Value(peerVersionKey{}).(string)
	var matched []endpoint.Endpoint
	for _, c := range p.conns {
		if version == "" || c.version == version {
			matched = append(matched, c.ep)
		}
	}
	if len(matched) == 0 {
		return nil, errors.New("no match found conn")
	}
	ep := matched[p.next%len(matched)]
	p.next++
	return ep, nil
}

func fixedEndpoints(n int) sd.FixedEndpointer {
	eps := make(sd.FixedEndpointer, n)
	for i := range eps {
		eps[i] = nopEndpoint
	}
	return eps
}

// sink keeps picks alive.
var sink endpoint.Endpoint

func BenchmarkPick(b *testing.B) {
	bg := context.Background()
	v2 := WithVersion(bg, "v2")
	peerV2 := context.WithValue(bg, peerVersionKey{}, "v2")

	etcdsd := func(st Strategy, ctx context.Context) func(*testing.B) {
		return func(b *testing.B) {
			e := benchEndpointer(b, st)
			b.ReportAllocs()
			for b.Loop() {
				ep, err := e.Pick(ctx)
				if err != nil {
					b.Fatal(err)
				}
				sink = ep
			}
		}
	}
	gokit := func(bal lb.Balancer) func(*testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ep, err := bal.Endpoint()
				if err != nil {
					b.Fatal(err)
				}
				sink = ep
			}
		}
	}
	mutexSlice := func(ctx context.Context) func(*testing.B) {
		return func(b *testing.B) {
			p := newMutexSlicePicker(benchInstances)
			b.ReportAllocs()
			for b.Loop() {
				ep, err := p.Pick(ctx)
				if err != nil {
					b.Fatal(err)
				}
				sink = ep
			}
		}
	}

	b.Run("pick=roundrobin/impl=etcdsd", etcdsd(RoundRobin, bg))
	b.Run("pick=roundrobin/impl=gokit", gokit(lb.NewRoundRobin(fixedEndpoints(benchInstances))))
	b.Run("pick=roundrobin/impl=mutex-slice", mutexSlice(bg))
	b.Run("pick=version/impl=etcdsd", etcdsd(RoundRobin, v2))
	b.Run("pick=version/impl=mutex-slice", mutexSlice(peerV2))
	b.Run("pick=version+zone/impl=etcdsd", etcdsd(RoundRobin, WithMetadata(v2, "zone", "z1")))
	b.Run("pick=random/impl=etcdsd", etcdsd(Random, bg))
	b.Run("pick=random/impl=gokit", gokit(lb.NewRandom(fixedEndpoints(benchInstances), 1)))
	b.Run("pick=leastloaded/impl=etcdsd", etcdsd(LeastLoaded, bg))
	b.Run("pick=weighted/impl=etcdsd", etcdsd(Weighted, bg))
	// One instance in ten ejected: a pick that draws one draws again.
	for _, st := range []struct {
		name string
		st   Strategy
	}{{"roundrobin", RoundRobin}, {"random", Random}, {"leastloaded", LeastLoaded}, {"weighted", Weighted}} {
		b.Run("pick="+st.name+"+10%-ejected/impl=etcdsd", func(b *testing.B) {
			e := benchEndpointer(b, st.st)
			ejectEvery(e, 10)
			b.ReportAllocs()
			for b.Loop() {
				ep, err := e.Pick(bg)
				if err != nil {
					b.Fatal(err)
				}
				sink = ep
			}
		})
	}
}

// ejectEvery ejects one instance of e in every n, for the benchmark's
// duration (no timer brings them back).
func ejectEvery(e *Endpointer, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, m := range e.sortedMembers() {
		if i%n == 0 {
			m.entry.Load().until.Store(e.od.now() + int64(time.Hour))
		}
	}
}

// BenchmarkPickParallel picks from every core at once: the shared counter
// of round robin is the only contended word in etcdsd.
func BenchmarkPickParallel(b *testing.B) {
	bg := context.Background()
	b.Run("pick=roundrobin/impl=etcdsd", func(b *testing.B) {
		e := benchEndpointer(b, RoundRobin)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := e.Pick(bg); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("pick=roundrobin/impl=gokit", func(b *testing.B) {
		bal := lb.NewRoundRobin(fixedEndpoints(benchInstances))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := bal.Endpoint(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("pick=version/impl=etcdsd", func(b *testing.B) {
		e := benchEndpointer(b, RoundRobin)
		ctx := WithVersion(bg, "v2")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := e.Pick(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("pick=version/impl=mutex-slice", func(b *testing.B) {
		p := newMutexSlicePicker(benchInstances)
		ctx := context.WithValue(bg, peerVersionKey{}, "v2")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := p.Pick(ctx); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkCall makes whole calls through the retrying endpoint to a no-op
// backend: etcdsd's loop in the caller's goroutine against go-kit's
// lb.Retry, which starts a goroutine per attempt.
func BenchmarkCall(b *testing.B) {
	bg := context.Background()
	b.Run("call=retry/impl=etcdsd", func(b *testing.B) {
		e := benchEndpointer(b, RoundRobin)
		ep := e.Endpoint()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ep(bg, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("call=retry+timeout/impl=etcdsd", func(b *testing.B) {
		src := source(b, benchValues(benchInstances)...)
		e, err := New(src, nopFactory, nil, WithRetry(3, time.Second))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(e.Close)
		ep := e.Endpoint()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ep(bg, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("call=retry+timeout/impl=gokit", func(b *testing.B) {
		ep := lb.Retry(3, time.Second, lb.NewRoundRobin(fixedEndpoints(benchInstances)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ep(bg, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUpdate is the cost of one change, a value rewritten on one key
// (a new version and weight, the same address), applied through the Feed
// path: update the member, its groups' blocks, publish. Before the
// incremental endpointer this rebuilt every group: 1.26 ms at 1,000.
func BenchmarkUpdate(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("update=one-of-%d/impl=etcdsd", n), func(b *testing.B) {
			vals := benchValues(n)
			src := source(b, vals...)
			e, err := New(src, nopFactory, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(e.Close)
			in, _ := instance.Parse(vals[17])
			in.Version, in.Weight = "v9", 7
			changed, _ := in.Encode()
			batches := []pipeline.Batch{
				{Rev: 1, Changes: []pipeline.Change{{Op: pipeline.Put, Key: vals[17], Value: changed, Prev: vals[17], Instance: in}}},
				{Rev: 1, Changes: []pipeline.Change{{Op: pipeline.Put, Key: vals[17], Value: vals[17], Prev: changed, Instance: mustParse(vals[17])}}},
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				e.apply(batches[i%2])
				i++
			}
		})
	}
}

func mustParse(v string) instance.Instance {
	in, err := instance.Parse(v)
	if err != nil {
		panic(err)
	}
	return in
}

// BenchmarkMemory reports the heap the Endpointer alone holds per instance
// at 100,000 plain-address instances, fed by a Feed (measured after GC,
// before and after New).
func BenchmarkMemory(b *testing.B) {
	const n = 100000
	vals := make([]string, n)
	for i := range vals {
		vals[i] = fmt.Sprintf("10.%d.%d.%d:8080", i>>16, i>>8&255, i&255)
	}
	src := source(b, vals...)
	var before, after runtime.MemStats
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&before)
		e, err := New(src, nopFactory, nil)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/instance")
		e.Close()
	}
}
