package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/etcdtest"
)

// envSoak lengthens the soak, e.g. ETCDSD_SOAK=5m.
const envSoak = "ETCDSD_SOAK"

const defaultSoak = 60 * time.Second

// soakFault is one fault the soak injects and heals.
type soakFault struct {
	name string
	run  func()
}

func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv(envSoak)
	if v == "" {
		return defaultSoak
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 5m", envSoak, v)
	}
	return d
}

// TestSoak churns registrations on a 3-member cluster while injecting
// random faults, and checks every invariant after each fault heals. It
// runs for 60 s (ETCDSD_SOAK lengthens it); -short skips it.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak runs without -short")
	}
	length := soakDuration(t)
	c := etcdtest.NewCluster(t, 3)
	svcPx := newProxies(t, c.Endpoints())
	obsPx := newProxies(t, c.Endpoints())
	logs := newLogTail(t)
	svc := newClient(t, logs, svcPx.Endpoints())
	obs := newClient(t, logs, obsPx.Endpoints())
	direct := newClient(t, logs, c.Endpoints())
	f := newFleet(t, "/faults/soak/", c.Client(t), logs)
	f.watch("registering client (behind proxies)", svc)
	f.watch("watching client (behind proxies)", obs)
	f.watch("direct client", direct)
	churners := []*churner{
		startChurn(f, svc, "svc", 5, 25, 40*time.Millisecond),
		startChurn(f, direct, "direct", 3, 10, 100*time.Millisecond),
	}
	t.Cleanup(func() {
		for _, ch := range churners {
			ch.stop()
		}
	})

	pause := func(d time.Duration) { time.Sleep(d/2 + rand.N(d)) } // d/2 to 3d/2
	faults := []soakFault{
		{"leader killed", func() {
			i := c.Leader()
			c.StopMember(i)
			pause(500 * time.Millisecond)
			c.StartMember(i)
		}},
		{"follower killed", func() {
			i := (c.Leader() + 1 + rand.IntN(2)) % 3
			c.StopMember(i)
			pause(500 * time.Millisecond)
			c.StartMember(i)
		}},
		{"registering client cut off shorter than the TTL", func() {
			svcPx.cut()
			pause(ttl / 3)
			svcPx.heal()
		}},
		{"registering client cut off longer than the TTL", func() {
			svcPx.cut()
			time.Sleep(ttl + heartbeat + rand.N(time.Second))
			svcPx.heal()
		}},
		{"watching client cut off across a compaction", func() {
			obsPx.cut()
			pause(time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if resp, err := f.truth.Get(ctx, "/"); err == nil {
				f.truth.Compact(ctx, resp.Header.Revision)
			}
			obsPx.heal()
		}},
		{"connections dropped", func() {
			svcPx.heal() // drops every connection; nothing is blackholed
			obsPx.heal()
		}},
		{"100 ms of latency", func() {
			svcPx.setLatency(50 * time.Millisecond)
			obsPx.setLatency(50 * time.Millisecond)
			pause(time.Second)
			svcPx.setLatency(0)
			obsPx.setLatency(0)
		}},
		{"whole cluster stopped longer than the TTL", func() {
			c.Stop()
			time.Sleep(ttl + heartbeat)
			c.Start()
		}},
	}

	injected := map[string]int{}
	var violations int
	var worst time.Duration
	var worstFault string
	start := time.Now()
	// Faults come in random order, each once per round, so that even a
	// short soak injects every kind.
	var order []int
	for time.Since(start) < length {
		if len(order) == 0 {
			order = rand.Perm(len(faults))
		}
		ft := faults[order[0]]
		order = order[1:]
		ft.run()
		injected[ft.name]++
		resume := make([]func(), len(churners))
		for i, ch := range churners {
			resume[i] = ch.quiesce()
		}
		d, err := f.check(converge)
		for _, r := range resume {
			r()
		}
		if err != nil {
			violations++
			t.Errorf("after %q: %v", ft.name, err)
			continue
		}
		if d > worst {
			worst, worstFault = d, ft.name
		}
		pause(300 * time.Millisecond) // churn between faults
	}
	var ops int64
	for _, ch := range churners {
		ops += ch.stop()
	}
	total := 0
	kinds := make([]string, 0, len(injected))
	for name, n := range injected {
		total += n
		kinds = append(kinds, fmt.Sprintf("%s: %d", name, n))
	}
	sort.Strings(kinds)
	t.Logf("soak of %v: %d faults injected (%s); %d operations; %d violations; worst convergence %v (after %q); %d instances at the end",
		time.Since(start).Round(time.Second), total, strings.Join(kinds, ", "), ops, violations, worst.Round(time.Millisecond), worstFault, len(f.keys()))
}
