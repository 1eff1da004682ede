package endpointer

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/endpointer"
	"github.com/etcdsd/etcdsd/internal/itest"
)

func TestRequestsSpreadOverAllInstances(t *testing.T) {
	e := newEnv(t)
	svcs := []*service{e.startService("s1", "v1"), e.startService("s2", "v2"), e.startService("s3", "v2")}
	c := e.newClient()
	itest.Eventually(t, 5*time.Second, "three instances", func() bool { return len(c.Instances()) == 3 })
	for range 300 {
		c.call(t, context.Background())
	}
	for _, s := range svcs {
		if n := s.served.Load(); n != 100 {
			t.Errorf("%s served %d of 300 round-robin requests, want 100", s.name, n)
		}
	}
}

func TestVersionRoutingSendsV2RequestsOnlyToV2(t *testing.T) {
	e := newEnv(t)
	v1 := e.startService("s1", "v1")
	v2a, v2b := e.startService("s2", "v2"), e.startService("s3", "v2")
	c := e.newClient(endpointer.WithStrategy(endpointer.Random))
	itest.Eventually(t, 5*time.Second, "three instances", func() bool { return len(c.Instances()) == 3 })
	ctx := endpointer.WithVersion(context.Background(), "v2")
	for range 200 {
		if r := c.call(t, ctx); r.Version != "v2" {
			t.Fatalf("v2 request answered by %s (%s)", r.Name, r.Version)
		}
	}
	if v1.served.Load() != 0 || v2a.served.Load() == 0 || v2b.served.Load() == 0 {
		t.Fatalf("served v1=%d v2a=%d v2b=%d; want v1 none, both v2 some", v1.served.Load(), v2a.served.Load(), v2b.served.Load())
	}
	if r := c.call(t, endpointer.WithVersion(context.Background(), "v1")); r.Name != "s1" {
		t.Fatalf("v1 request answered by %s", r.Name)
	}
}

// traffic sends requests from two goroutines until stop, counting
// successes and keeping every error.
type traffic struct {
	ok   atomic.Int64
	mu   sync.Mutex
	errs []error
	quit chan struct{}
	wg   sync.WaitGroup
}

func startTraffic(c *client) *traffic {
	tr := &traffic{quit: make(chan struct{})}
	for range 2 {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for {
				select {
				case <-tr.quit:
					return
				default:
				}
				if _, err := c.Endpoint()(context.Background(), struct{}{}); err != nil {
					tr.mu.Lock()
					tr.errs = append(tr.errs, err)
					tr.mu.Unlock()
				} else {
					tr.ok.Add(1)
				}
			}
		}()
	}
	return tr
}

// stop ends the traffic and returns the successes and errors.
func (tr *traffic) stop() (int64, []error) {
	close(tr.quit)
	tr.wg.Wait()
	return tr.ok.Load(), tr.errs
}

func TestStoppingAServerMidTrafficLosesNoRequest(t *testing.T) {
	e := newEnv(t)
	victim := e.startService("s1", "v1")
	e.startService("s2", "v1")
	e.startService("s3", "v2")
	c := e.newClient()
	itest.Eventually(t, 5*time.Second, "three instances", func() bool { return len(c.Instances()) == 3 })

	tr := startTraffic(c)
	t.Cleanup(func() {
		select {
		case <-tr.quit:
		default:
			tr.stop()
		}
	})
	itest.Eventually(t, 5*time.Second, "traffic flowing", func() bool { return victim.served.Load() > 20 })

	// The process dies: its port refuses connections while its key is
	// still in etcd, so calls to it fail and are retried elsewhere.
	victim.crash()
	itest.Eventually(t, 5*time.Second, "calls to the dead server failing", func() bool { return c.failuresAt(victim.addr) >= 5 })

	// Its key goes; the Endpointer drops it and closes its endpoint.
	victim.stop()
	itest.Eventually(t, 5*time.Second, "dead instance dropped", func() bool { return !c.has(victim.addr) })
	itest.Eventually(t, 5*time.Second, "dead endpoint closed", func() bool { return c.closesOf(victim.addr) == 1 })
	failed := c.failuresAt(victim.addr)
	before := tr.ok.Load()
	itest.Eventually(t, 5*time.Second, "traffic after the drop", func() bool { return tr.ok.Load() > before+200 })

	ok, errs := tr.stop()
	if len(errs) > 0 {
		t.Fatalf("%d of %d requests lost, first: %v", len(errs), ok+int64(len(errs)), errs[0])
	}
	if c.failuresAt(victim.addr) != failed {
		t.Fatal("calls still went to the dropped instance")
	}
	t.Logf("%d requests, none lost; %d attempts on the dead server were retried", ok, failed)
}

func TestNewInstanceReceivesTrafficWithoutRestart(t *testing.T) {
	e := newEnv(t)
	e.startService("s1", "v1")
	e.startService("s2", "v1")
	c := e.newClient(endpointer.WithStrategy(endpointer.LeastLoaded))
	itest.Eventually(t, 5*time.Second, "two instances", func() bool { return len(c.Instances()) == 2 })
	tr := startTraffic(c)
	t.Cleanup(func() {
		select {
		case <-tr.quit:
		default:
			tr.stop()
		}
	})
	itest.Eventually(t, 5*time.Second, "traffic flowing", func() bool { return tr.ok.Load() > 50 })

	late := e.startService("s3", "v2")
	itest.Eventually(t, 5*time.Second, "new instance serving", func() bool { return late.served.Load() > 20 })
	if _, errs := tr.stop(); len(errs) > 0 {
		t.Fatalf("%d requests failed, first: %v", len(errs), errs[0])
	}
	if r := c.call(t, endpointer.WithVersion(context.Background(), "v2")); r.Name != "s3" {
		t.Fatalf("v2 request answered by %s", r.Name)
	}
}

func TestWeightChangeInEtcdShiftsTraffic(t *testing.T) {
	e := newEnv(t)
	heavy := e.startService("s1", "v1")
	light := e.startService("s2", "v1")
	c := e.newClient(endpointer.WithStrategy(endpointer.Weighted))
	itest.Eventually(t, 5*time.Second, "two instances", func() bool { return len(c.Instances()) == 2 })

	// An operator (or the catalog overlay) rewrites s1's value with weight 9.
	value := `{"id":"s1","name":"greeter","version":"v1","address":"` + heavy.addr + `","weight":9}`
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.client.EtcdClient().Put(ctx, e.prefix+"s1", value); err != nil {
		t.Fatal(err)
	}
	itest.Eventually(t, 5*time.Second, "weight 9 seen", func() bool {
		for _, in := range c.Instances() {
			if in.ID == "s1" && in.Weight == 9 {
				return true
			}
		}
		return false
	})
	h0, l0 := heavy.served.Load(), light.served.Load()
	for range 1000 {
		c.call(t, context.Background())
	}
	h, l := heavy.served.Load()-h0, light.served.Load()-l0
	if h < 820 || h > 970 {
		t.Fatalf("weight 9 vs 1: s1 served %d, s2 %d of 1000; want about 900 and 100", h, l)
	}
	if c.closesOf(heavy.addr) != 0 {
		t.Fatal("a weight change closed the endpoint")
	}
}
