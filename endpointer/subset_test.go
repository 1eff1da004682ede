package endpointer

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/etcdsd/etcdsd/instance"
)

// makeMembers makes n members of version v with IDs prefix-0 … prefix-(n-1).
func makeMembers(n int, version, prefix string) []*member {
	out := make([]*member, n)
	for i := range out {
		in := instance.Instance{ID: fmt.Sprintf("%s-%d", prefix, i), Address: fmt.Sprintf("%s-%d:80", prefix, i), Version: version}
		v, _ := in.Encode()
		out[i] = &member{value: v, inst: &in}
	}
	return out
}

// subset adds members one by one to a fresh subsets and returns those it
// keeps.
func subset(members []*member, size int, clientID string) []*member {
	s := newSubsets(size, clientID, func(*member) {})
	for _, m := range members {
		m.inSubset = false
		s.add(m)
	}
	var out []*member
	for _, vs := range s.byVersion {
		for _, r := range vs.in {
			out = append(out, r.m)
		}
	}
	return out
}

func ids(ms []*member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.inst.ID
	}
	slices.Sort(out)
	return out
}

func TestSubsetRemovingOneInstanceMovesOnlyTheClientsThatHeldIt(t *testing.T) {
	all := makeMembers(100, "", "srv")
	const size, clients = 10, 1000
	removed := all[37]
	rest := slices.Delete(slices.Clone(all), 37, 38)
	held := 0
	for c := range clients {
		id := fmt.Sprintf("client-%d", c)
		before := ids(subset(all, size, id))
		after := ids(subset(rest, size, id))
		if len(before) != size || len(after) != size {
			t.Fatalf("%s: subset sizes %d, %d; want %d", id, len(before), len(after), size)
		}
		if !slices.Contains(before, removed.inst.ID) {
			if !slices.Equal(before, after) {
				t.Fatalf("%s did not hold %s but its subset changed: %v → %v", id, removed.inst.ID, before, after)
			}
			continue
		}
		held++
		kept := slices.DeleteFunc(slices.Clone(before), func(s string) bool { return s == removed.inst.ID })
		moved := 0
		for _, s := range after {
			if !slices.Contains(kept, s) {
				moved++
			}
		}
		if moved != 1 {
			t.Fatalf("%s held %s: %d instances replaced, want exactly 1: %v → %v", id, removed.inst.ID, moved, before, after)
		}
	}
	// About size/len(all) of the clients hold any one instance.
	if held < 60 || held > 140 {
		t.Fatalf("%d of %d clients held the removed instance, want about 100", held, clients)
	}
}

func TestSubsetSpreadsClientsEvenly(t *testing.T) {
	all := makeMembers(50, "", "srv")
	load := map[string]int{}
	const clients, size = 2000, 5
	for c := range clients {
		for _, m := range subset(all, size, fmt.Sprintf("pod-%d", c)) {
			load[m.inst.ID]++
		}
	}
	// Expected 200 each; binomial sd ≈ 13.4, so ±60 is beyond 4 sd.
	for id, n := range load {
		if n < 140 || n > 260 {
			t.Fatalf("%s serves %d clients, want about 200: %v", id, n, load)
		}
	}
	if len(load) != 50 {
		t.Fatalf("%d servers used, want all 50", len(load))
	}
}

func TestSubsetIsPerVersionAndStableAcrossWeightChanges(t *testing.T) {
	ms := append(makeMembers(20, "v1", "a"), makeMembers(3, "v2", "b")...)
	got := subset(ms, 4, "client-x")
	per := map[string]int{}
	for _, m := range got {
		per[m.inst.Version]++
	}
	if per["v1"] != 4 || per["v2"] != 3 {
		t.Fatalf("subset per version = %v, want v1:4 v2:3 (all of v2)", per)
	}
	reweighted := make([]*member, len(ms))
	for i, m := range ms {
		in := *m.inst
		in.Weight = 7
		v, _ := in.Encode()
		reweighted[i] = &member{value: v, inst: &in}
	}
	if !slices.Equal(ids(got), ids(subset(reweighted, 4, "client-x"))) {
		t.Fatal("a weight change moved the subset")
	}
}

func TestSubsetLimitsFactoryCallsAndRoutesWithin(t *testing.T) {
	f := newFleet()
	var vals []string
	for i := range 30 {
		vals = append(vals, jsonValue(fmt.Sprintf("s%d", i), fmt.Sprintf("s%d:80", i), "v1", 0))
	}
	vals = append(vals, jsonValue("new", "new:80", "v2", 0))
	src := source(t, vals...)
	e := newEndpointer(t, src, f, WithSubset(3, "client-1"))
	if n := len(e.Instances()); n != 4 {
		t.Fatalf("%d instances, want 3 of v1 and 1 of v2", n)
	}
	f.mu.Lock()
	made := len(f.factories)
	f.mu.Unlock()
	if made != 4 {
		t.Fatalf("factory called for %d addresses, want 4", made)
	}
	if got := call(t, e, WithVersion(context.Background(), "v2")); got != "new:80" {
		t.Fatalf("v2 routed to %q", got)
	}
	other := newEndpointer(t, src, newFleet(), WithSubset(3, "client-1"))
	if fmt.Sprint(e.Instances()) != fmt.Sprint(other.Instances()) {
		t.Fatal("the same client ID chose a different subset")
	}
}
