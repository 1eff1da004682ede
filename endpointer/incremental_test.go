package endpointer

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/pipeline"
)

func TestValueChangeOfOneKeyKeepsOtherEndpoints(t *testing.T) {
	bothPaths(t, func(t *testing.T, source sourceFunc) {
		f := newFleet()
		var vals []string
		for i := range 50 {
			vals = append(vals, jsonValue(fmt.Sprint(i), fmt.Sprintf("s%d:1", i), "v1", 1))
		}
		src := source(t, vals...)
		e := newEndpointer(t, src, f)
		vals[7] = jsonValue("7", "s7:1", "v2", 5)
		set(src, vals...)
		itest.Eventually(t, 5*time.Second, "s7:1 in v2", func() bool {
			_, err := e.Pick(WithVersion(context.Background(), "v2"))
			return err == nil
		})
		for i := range 50 {
			if n := f.factoryCalls(fmt.Sprintf("s%d:1", i)); n != 1 {
				t.Fatalf("factory called %d times for s%d:1, want 1", n, i)
			}
		}
		if n := len(e.Instances()); n != 50 {
			t.Fatalf("%d instances, want 50", n)
		}
	})
}

func TestDeletingOneOfTwoKeysWithTheSameValueKeepsTheInstance(t *testing.T) {
	f := newFleet()
	src := source(t).(*feedSource)
	e := newEndpointer(t, src, f)
	src.put("k1", "a:1")
	src.put("k2", "a:1")
	waitLen(t, e, 1)
	src.del("k1")
	src.put("k3", "b:1")
	waitLen(t, e, 2)
	if got := e.Instances()[0].Address; got != "a:1" || f.get("a:1").closes.Load() != 0 {
		t.Fatalf("a:1 gone (first %q) after one of its two keys was deleted", got)
	}
	src.del("k2")
	waitLen(t, e, 1)
	itest.Eventually(t, 5*time.Second, "a:1 closed", func() bool { return f.get("a:1").closes.Load() == 1 })
}

// served returns the addresses that n calls with ctx reach.
func served(t *testing.T, e *Endpointer, ctx context.Context, n int) []string {
	t.Helper()
	var out []string
	for range n {
		if a := call(t, e, ctx); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

func TestCompoundSelectorGroupsFollowChanges(t *testing.T) {
	bothPaths(t, func(t *testing.T, source sourceFunc) {
		vals := slices.Clone(fleetValues)
		src := source(t, vals...)
		e := newEndpointer(t, src, newFleet())
		ctx := WithMetadata(WithMetadata(context.Background(), "zone", "a"), "tier", "gold")
		if got := served(t, e, ctx, 20); !slices.Equal(got, []string{"v2a:1"}) {
			t.Fatalf("served by %v", got)
		}
		vals = append(vals, jsonValue("v3-a", "v3a:1", "v3", 0, "zone", "a", "tier", "gold"))
		set(src, vals...)
		waitLen(t, e, 6)
		if got := served(t, e, ctx, 40); !slices.Equal(got, []string{"v2a:1", "v3a:1"}) {
			t.Fatalf("after an arrival served by %v", got)
		}
		vals = slices.DeleteFunc(vals, func(v string) bool { return v == fleetValues[2] })
		set(src, vals...)
		waitLen(t, e, 5)
		if got := served(t, e, ctx, 20); !slices.Equal(got, []string{"v3a:1"}) {
			t.Fatalf("after a departure served by %v", got)
		}
		set(src, vals[:2]...)
		waitLen(t, e, 2)
		if _, err := e.Pick(ctx); err == nil {
			t.Fatal("compound selector matched after its instances left")
		}
	})
}

func TestWeightedFollowsWeightsAfterChanges(t *testing.T) {
	bothPaths(t, func(t *testing.T, source sourceFunc) {
		// 300 instances span three blocks; then one leaves, one arrives and
		// one is reweighted.
		var vals []string
		for i := range 300 {
			vals = append(vals, jsonValue(fmt.Sprint(i), fmt.Sprintf("s%d:1", i), "", 1))
		}
		src := source(t, vals...)
		e := newEndpointer(t, src, newFleet(), WithStrategy(Weighted), WithSeed(13))
		vals[0] = jsonValue("0", "s0:1", "", 100)
		vals[150] = jsonValue("x", "x:1", "", 200)
		vals = slices.Delete(vals, 299, 300)
		set(src, vals...)
		itest.Eventually(t, 5*time.Second, "x:1 routed", func() bool {
			return len(e.Instances()) == 299 && slices.ContainsFunc(e.Instances(), func(in instance.Instance) bool { return in.Address == "x:1" })
		})
		const n = 60000
		got := countPicks(t, e, context.Background(), n)
		// Weights: s0 100, x 200, 297 others 1 each: 597 in all.
		want := map[string]float64{"s0:1": 100.0 / 597, "x:1": 200.0 / 597, "rest": 297.0 / 597}
		rest := 0
		for a, c := range got {
			if a != "s0:1" && a != "x:1" {
				rest += c
			}
		}
		if got["s299:1"] != 0 || got["s150:1"] != 0 {
			t.Fatalf("a departed instance was picked: %v", got)
		}
		got["rest"] = rest
		if x := chiSquare(got, want, n); x > 13.82 { // df 2
			t.Fatalf("chi-square %.1f > 13.82: s0 %d, x %d, rest %d", x, got["s0:1"], got["x:1"], rest)
		}
	})
}

func TestSubsetFollowsDeparturesAndBetterArrivals(t *testing.T) {
	bothPaths(t, func(t *testing.T, source sourceFunc) {
		var vals []string
		for i := range 40 {
			vals = append(vals, jsonValue(fmt.Sprintf("s%d", i), fmt.Sprintf("s%d:1", i), "v1", 0))
		}
		src := source(t, vals...)
		const size, client = 4, "client-9"
		f := newFleet()
		e := newEndpointer(t, src, f, WithSubset(size, client))
		// want is the subset computed from scratch.
		want := func(vals []string) []string {
			ms := make([]*member, len(vals))
			for i, v := range vals {
				in, _ := instance.Parse(v)
				ms[i] = &member{value: v, inst: &in}
			}
			return ids(subset(ms, size, client))
		}
		have := func() []string {
			var out []string
			for _, in := range e.Instances() {
				out = append(out, in.ID)
			}
			slices.Sort(out)
			return out
		}
		if got := have(); !slices.Equal(got, want(vals)) {
			t.Fatalf("subset %v, want %v", got, want(vals))
		}
		// A subset member leaves.
		gone := have()[0]
		vals = slices.DeleteFunc(vals, func(v string) bool { return v == jsonValue(gone, gone+":1", "v1", 0) })
		set(src, vals...)
		itest.Eventually(t, 5*time.Second, "subset after a departure", func() bool { return slices.Equal(have(), want(vals)) })
		// Arrivals until one ranks better than a subset member.
		before := have()
		for i := 100; slices.Equal(have(), before); i++ {
			vals = append(vals, jsonValue(fmt.Sprintf("s%d", i), fmt.Sprintf("s%d:1", i), "v1", 0))
			set(src, vals...)
			itest.Eventually(t, 5*time.Second, "arrival applied", func() bool { return slices.Equal(have(), want(vals)) })
		}
		// A reweighted subset member stays, without a new endpoint.
		kept := have()[0]
		for i, v := range vals {
			if v == jsonValue(kept, kept+":1", "v1", 0) {
				vals[i] = jsonValue(kept, kept+":1", "v1", 9)
			}
		}
		set(src, vals...)
		itest.Eventually(t, 5*time.Second, "reweighted", func() bool {
			return slices.ContainsFunc(e.Instances(), func(in instance.Instance) bool { return in.ID == kept && in.Weight == 9 })
		})
		if !slices.Equal(have(), want(vals)) || f.factoryCalls(kept+":1") != 1 {
			t.Fatalf("subset %v after a weight change, want %v with no new endpoint", have(), want(vals))
		}
	})
}

func TestPicksDuringChangesAreSafe(t *testing.T) {
	bothPaths(t, func(t *testing.T, source sourceFunc) {
		vals := benchValues(200)
		src := source(t, vals...)
		for _, st := range []Strategy{RoundRobin, Random, LeastLoaded, Weighted} {
			e := newEndpointer(t, src, newFleet(), WithStrategy(st), WithSeed(3))
			ctxs := []context.Context{
				context.Background(),
				WithVersion(context.Background(), "v2"),
				WithMetadata(context.Background(), "zone", "z1"),
				WithMetadata(WithMetadata(context.Background(), "zone", "z2"), "x", "y"),
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for _, ctx := range ctxs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						if _, err := e.Endpoint()(ctx, nil); err != nil && ctx == ctxs[0] {
							t.Error(err)
							return
						}
						_, _ = e.Endpoints()
					}
				}()
			}
			for i := range 15 {
				cur := slices.Clone(vals[i%7 : 200-i%5])
				cur[i] = benchValues(201 + i)[200+i]
				set(src, cur...)
			}
			close(stop)
			wg.Wait()
		}
	})
}

// A plain value and a JSON value of the same address share one endpoint,
// whichever replaces the other, and Close closes it once.
func TestPlainAndJSONValuesOfOneAddressShareTheEndpoint(t *testing.T) {
	bothPaths(t, func(t *testing.T, source sourceFunc) {
		f := newFleet()
		src := source(t, "a:1", "b:1")
		e := newEndpointer(t, src, f)
		set(src, jsonValue("a", "a:1", "v2", 3), "b:1") // plain → JSON in one change
		itest.Eventually(t, 5*time.Second, "a:1 in v2", func() bool {
			_, err := e.Pick(WithVersion(context.Background(), "v2"))
			return err == nil
		})
		set(src, "a:1", jsonValue("a", "a:1", "v2", 3), "b:1") // both at once
		waitLen(t, e, 3)
		set(src, "a:1", "b:1") // JSON → plain
		waitLen(t, e, 2)
		if n, c := f.factoryCalls("a:1"), f.get("a:1").closes.Load(); n != 1 || c != 0 {
			t.Fatalf("a:1: factory called %d times and closed %d times, want 1 and 0", n, c)
		}
		set(src, "b:1")
		itest.Eventually(t, 5*time.Second, "a:1 closed", func() bool { return f.get("a:1").closes.Load() == 1 })
		set(src, "a:1", "b:1")
		waitLen(t, e, 2)
		e.Close()
		if c := f.get("a:1").closes.Load(); c != 2 { // once when it left, once at Close
			t.Fatalf("a:1 closed %d times in all, want 2", c)
		}
		if c := f.get("b:1").closes.Load(); c != 1 {
			t.Fatalf("b:1 closed %d times at Close, want 1", c)
		}
	})
}

// The operator's properties (etcdv3's and catalog's Instancers) change an
// instance's weight through the Feed's Filter and keep its value: the
// Weighted strategy follows, through the same endpoint.
func TestWeightChangeWithTheSameValueReweighsThroughTheSameEndpoint(t *testing.T) {
	f := newFleet()
	var mu sync.Mutex
	weights := map[string]int{}
	filter := func(key string, inst instance.Instance) (instance.Instance, bool) {
		mu.Lock()
		defer mu.Unlock()
		if w, ok := weights[key]; ok {
			inst.Weight = w
		}
		return inst, true
	}
	src := &feedSource{f: pipeline.NewFeed(pipeline.WithFilter(filter))}
	t.Cleanup(src.f.Stop)
	e := newEndpointer(t, src, f, WithStrategy(Weighted), WithSeed(7))
	src.put("a", "a:1")
	src.put("b", "b:1")
	waitLen(t, e, 2)

	mu.Lock()
	weights["a"] = 9 // a plain value, weighted by an override
	mu.Unlock()
	src.f.Refilter()
	itest.Eventually(t, 5*time.Second, "a:1 with weight 9", func() bool {
		return slices.ContainsFunc(e.Instances(), func(in instance.Instance) bool { return in.Address == "a:1" && in.Weight == 9 })
	})
	const n = 20000
	got := countPicks(t, e, context.Background(), n)
	if x := chiSquare(got, map[string]float64{"a:1": 0.9, "b:1": 0.1}, n); x > 10.83 { // df 1
		t.Fatalf("chi-square %.1f > 10.83: %v, want a:b = 9:1", x, got)
	}
	if f.factoryCalls("a:1") != 1 || f.get("a:1").closes.Load() != 0 {
		t.Fatalf("a:1: factory called %d times, closed %d times; want the endpoint kept", f.factoryCalls("a:1"), f.get("a:1").closes.Load())
	}

	mu.Lock()
	delete(weights, "a") // the override cleared
	mu.Unlock()
	src.f.Refilter()
	itest.Eventually(t, 5*time.Second, "a:1 plain again", func() bool {
		return slices.ContainsFunc(e.Instances(), func(in instance.Instance) bool { return in.Address == "a:1" && in.Weight == 0 })
	})
	src.del("a")
	waitLen(t, e, 1)
	itest.Eventually(t, 5*time.Second, "a:1 closed", func() bool { return f.get("a:1").closes.Load() == 1 })
	e.mu.Lock()
	live := liveEntries(e)
	e.mu.Unlock()
	if len(live) != 1 || live["b:1"] == nil {
		t.Fatalf("endpoints %v, want only b:1's", live)
	}
}

// Values that share a version and an identity (an ID, or an address when
// they have none) and leave together all leave: none stays routed, and
// the endpoint of their address closes.
func TestEveryDepartedValueIsReleased(t *testing.T) {
	for name, opts := range map[string][]Option{"all": nil, "subset": {WithSubset(10, "client")}} {
		t.Run(name, func(t *testing.T) {
			bothPaths(t, func(t *testing.T, source sourceFunc) {
				f := newFleet()
				src := source(t,
					"10.0.0.1:80", jsonValue("", "10.0.0.1:80", "", 3), // identity 10.0.0.1:80
					jsonValue("x", "10.0.0.2:80", "v1", 1), jsonValue("x", "10.0.0.2:80", "v1", 2), // identity x
					"b:1")
				e := newEndpointer(t, src, f, opts...)
				waitLen(t, e, 5)
				set(src, "b:1")
				itest.Eventually(t, 5*time.Second, "10.0.0.1:80 and 10.0.0.2:80 closed", func() bool {
					return f.get("10.0.0.1:80").closes.Load() == 1 && f.get("10.0.0.2:80").closes.Load() == 1
				})
				if got := served(t, e, context.Background(), 20); !slices.Equal(got, []string{"b:1"}) {
					t.Fatalf("calls went to %v after both values of 10.0.0.1:80 and of x left, want [b:1]", got)
				}
				if n := len(e.Instances()); n != 1 {
					t.Fatalf("%d instances routed, want 1", n)
				}
			})
		})
	}
}
