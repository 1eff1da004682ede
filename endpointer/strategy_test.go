package endpointer

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/etcdsd/etcdsd/instance"
)

// addrs returns n plain addresses.
func addrs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.0.0.%d:80", i)
	}
	return out
}

// countPicks makes n picks and counts them by address.
func countPicks(t *testing.T, e *Endpointer, ctx context.Context, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		got[call(t, e, ctx)]++
	}
	return got
}

// chiSquare returns Pearson's statistic of counts against expected shares.
func chiSquare(counts map[string]int, expected map[string]float64, total int) float64 {
	var x float64
	for k, p := range expected {
		want := p * float64(total)
		d := float64(counts[k]) - want
		x += d * d / want
	}
	return x
}

func uniform(keys []string) map[string]float64 {
	m := map[string]float64{}
	for _, k := range keys {
		m[k] = 1 / float64(len(keys))
	}
	return m
}

func TestRoundRobinTakesEachInstanceInTurn(t *testing.T) {
	as := addrs(5)
	e := newEndpointer(t, source(t, as...), newFleet())
	got := countPicks(t, e, context.Background(), 500)
	for _, a := range as {
		if got[a] != 100 {
			t.Fatalf("round robin counts %v, want exactly 100 each", got)
		}
	}
	first := call(t, e, context.Background())
	for range 4 {
		if call(t, e, context.Background()) == first {
			t.Fatal("round robin repeated an instance within one turn")
		}
	}
}

// The critical values are the 99.9th percentiles of chi-square with
// len-1 degrees of freedom; with a fixed seed the tests are deterministic,
// and the bounds say the seed is not a lucky one.
func TestRandomIsUniform(t *testing.T) {
	as := addrs(10)
	e := newEndpointer(t, source(t, as...), newFleet(), WithStrategy(Random), WithSeed(7))
	const n = 50000
	got := countPicks(t, e, context.Background(), n)
	if x := chiSquare(got, uniform(as), n); x > 27.88 { // df 9
		t.Fatalf("chi-square %.1f > 27.88: counts %v", x, got)
	}
}

func TestRandomIsSafeForConcurrentPicks(t *testing.T) {
	as := addrs(4)
	e := newEndpointer(t, source(t, as...), newFleet(), WithStrategy(Random), WithSeed(3))
	var mu sync.Mutex
	total := map[string]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := map[string]int{}
			for range 5000 {
				ep, err := e.Pick(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				r, _ := ep(context.Background(), nil)
				local[r.(string)]++
			}
			mu.Lock()
			defer mu.Unlock()
			for k, v := range local {
				total[k] += v
			}
		}()
	}
	wg.Wait()
	if x := chiSquare(total, uniform(as), 40000); x > 16.27 { // df 3
		t.Fatalf("chi-square %.1f > 16.27 under concurrency: %v", x, total)
	}
}

func TestWeightedFollowsWeights(t *testing.T) {
	vals := []string{
		jsonValue("a", "a:1", "", 1),
		jsonValue("b", "b:1", "", 2),
		jsonValue("c", "c:1", "", 3),
		jsonValue("d", "d:1", "", 0), // unset: counts as 1
		jsonValue("e", "e:1", "", 13),
	}
	e := newEndpointer(t, source(t, vals...), newFleet(), WithStrategy(Weighted), WithSeed(11))
	const n = 60000
	got := countPicks(t, e, context.Background(), n)
	want := map[string]float64{"a:1": 1.0 / 20, "b:1": 2.0 / 20, "c:1": 3.0 / 20, "d:1": 1.0 / 20, "e:1": 13.0 / 20}
	if x := chiSquare(got, want, n); x > 18.47 { // df 4
		t.Fatalf("chi-square %.1f > 18.47: counts %v", x, got)
	}
}

func TestWeightedSlotsAreExact(t *testing.T) {
	// 300 members over three blocks, after removals that move members
	// between blocks: each is drawn with probability weight/total.
	w := &writer{weighted: true, batch: 1}
	g := newGroup(newRNG(1), nil, true)
	var ms []*member
	for i := range 300 {
		in := &instance.Instance{ID: fmt.Sprint(i), Address: fmt.Sprintf("a%d:1", i), Weight: 1 + i%7}
		m := &member{value: in.ID, inst: in}
		ms = append(ms, m)
		g.add(m, w)
	}
	g.publish(w)
	w.batch++
	for _, i := range []int{5, 130, 299, 0} {
		g.remove(ms[i], w)
	}
	g.publish(w)
	s := g.cur.Load()
	var total float64
	for _, m := range ms {
		if _, ok := g.pos[m]; ok {
			total += float64(m.weight())
		}
	}
	// The chance of each position is the chance of its block in the table
	// over blocks times its chance in its block's table; both are exact up
	// to the 2^-32 steps of the thresholds.
	chance := aliasChances(s.top)
	got := map[*member]float64{}
	for bi, b := range s.blocks {
		for j, c := range aliasChances(b.alias) {
			got[b.ms[j]] += chance[bi] * c
		}
	}
	for _, m := range ms {
		want := float64(m.weight()) / total
		if _, ok := g.pos[m]; !ok {
			want = 0
		}
		if d := got[m] - want; d > 1e-6 || d < -1e-6 {
			t.Fatalf("member %s drawn with chance %.9f, want %.9f", m.value, got[m], want)
		}
	}
}

// aliasChances returns the chance the table gives each index.
func aliasChances(t *aliasTable) []float64 {
	n := len(t.threshold)
	out := make([]float64, n)
	for i := range n {
		keep := float64(t.threshold[i]) / (1 << 32)
		out[i] += keep / float64(n)
		out[t.alias[i]] += (1 - keep) / float64(n)
	}
	return out
}

func TestLeastLoadedAvoidsBusyInstances(t *testing.T) {
	f := newFleet()
	as := addrs(4)
	busy := f.get(as[0])
	busy.block = make(chan struct{})
	busy.started = make(chan struct{}, 100)
	e := newEndpointer(t, source(t, as...), f, WithStrategy(LeastLoaded), WithSeed(5))

	// Hold 3 calls in flight on as[0].
	e.mu.Lock()
	ep := liveEntries(e)[as[0]].endpoint
	e.mu.Unlock()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := ep(context.Background(), nil); err != nil {
				t.Error(err)
			}
		}()
		<-busy.started
	}
	got := countPicks(t, e, context.Background(), 3000)
	close(busy.block)
	wg.Wait()
	if got[as[0]] != 0 {
		t.Fatalf("the busy instance got %d picks; two choices always see a less loaded one", got[as[0]])
	}
	for _, a := range as[1:] {
		if got[a] < 850 || got[a] > 1150 {
			t.Fatalf("idle instances should share evenly: %v", got)
		}
	}
}

func TestLeastLoadedIsUniformWhenIdle(t *testing.T) {
	as := addrs(6)
	e := newEndpointer(t, source(t, as...), newFleet(), WithStrategy(LeastLoaded), WithSeed(9))
	const n = 30000
	got := countPicks(t, e, context.Background(), n)
	if x := chiSquare(got, uniform(as), n); x > 20.52 { // df 5
		t.Fatalf("chi-square %.1f > 20.52: %v", x, got)
	}
}

func TestStrategyString(t *testing.T) {
	for s, want := range map[Strategy]string{RoundRobin: "round-robin", Random: "random", LeastLoaded: "least-loaded", Weighted: "weighted", Strategy(7): "Strategy(7)"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(s), s.String(), want)
		}
	}
}

func TestFastmodIsModulo(t *testing.T) {
	for _, n := range []uint64{1, 2, 3, 7, 10, 250, 1000, 1 << 20, 1<<32 - 1} {
		magic := ^uint64(0)/n + 1
		for _, a := range []uint32{0, 1, 2, 999, 1000, 1001, 123456789, 1<<32 - 1} {
			if got, want := fastmod(a, magic, n), uint64(a)%n; got != want {
				t.Fatalf("fastmod(%d, %d) = %d, want %d", a, n, got, want)
			}
		}
	}
}
