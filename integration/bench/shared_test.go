package bench

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	kitsd "github.com/go-kit/kit/sd"
	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
)

// envSharedInstancers sets how many Instancers BenchmarkSharedInstancers
// runs on one prefix, default 50.
const envSharedInstancers = "ETCDSD_SHARED_INSTANCERS"

// seenBy records when each of many consumers first saw each marker: a
// marker's lag is that of the last consumer to see it.
type seenBy struct {
	m    *markers
	mu   sync.Mutex
	seen []map[string]time.Time
}

func newSeenBy(m *markers, consumers int) *seenBy {
	s := &seenBy{m: m, seen: make([]map[string]time.Time, consumers)}
	for i := range s.seen {
		s.seen[i] = make(map[string]time.Time)
	}
	return s
}

// saw records the markers consumer i finds in the sorted values.
func (s *seenBy) saw(i int, values []string) {
	now := time.Now()
	s.m.mu.Lock()
	sent := make([]string, 0, len(s.m.sent))
	for v := range s.m.sent {
		sent = append(sent, v)
	}
	s.m.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range sent {
		if _, ok := s.seen[i][v]; ok {
			continue
		}
		if _, found := slices.BinarySearch(values, v); found {
			s.seen[i][v] = now
		}
	}
}

// wait waits until every consumer saw every marker or the deadline
// passes, and returns the sorted lags of the last consumers, an unseen
// marker counting with its age at the deadline.
func (s *seenBy) wait(deadline time.Time) (lags []time.Duration, unseen int) {
	all := func() bool {
		s.m.mu.Lock()
		defer s.m.mu.Unlock()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, seen := range s.seen {
			if len(seen) < len(s.m.sent) {
				return false
			}
		}
		return true
	}
	for !all() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for v, t := range s.m.sent {
		last, missing := time.Duration(0), false
		for _, seen := range s.seen {
			at, ok := seen[v]
			if !ok {
				missing = true
				at = deadline
			}
			last = max(last, at.Sub(t))
		}
		if missing {
			unseen++
		}
		lags = append(lags, last)
	}
	slices.Sort(lags)
	return lags, unseen
}

// manyInstancers starts count Instancers of the prefix, each with a go-kit
// subscriber, on one client (shared) or on a client each over one etcd
// connection (FromClient: the same connection, no identity in common,
// so nothing shared). It returns a function that stops them.
func manyInstancers(b *testing.B, srv *etcdtest.Server, count int, shared bool, s *seenBy) func() {
	cli := srv.Client(b)
	one := etcdv3.FromClient(cli, etcdv3.ClientOptions{})
	var clients []*etcdv3.EtcdClient
	var stops []func()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for i := range count {
		c := one
		if !shared {
			c = etcdv3.FromClient(cli, etcdv3.ClientOptions{})
			clients = append(clients, c)
		}
		in, err := etcdv3.NewInstancer(c, prefix, log.NewNopLogger())
		if err != nil {
			b.Fatal(err)
		}
		ch := make(chan kitsd.Event, 1)
		in.Register(ch)
		wg.Go(func() {
			for {
				select {
				case ev := <-ch:
					s.saw(i, ev.Instances)
				case <-quit:
					return
				}
			}
		})
		stops = append(stops, func() { in.Deregister(ch); in.Stop() })
	}
	return func() {
		close(quit)
		wg.Wait()
		for _, stop := range stops {
			stop()
		}
		for _, c := range clients {
			c.Close()
		}
		one.Close()
	}
}

// BenchmarkSharedInstancers: N Instancers of one prefix under churn, each
// with a go-kit subscriber, sharing one client (one watch, one sd.Event
// list per change) or each on a client of its own over the same etcd
// connection (a watch and a list each, as before sharing), against one raw
// clientv3 watch (the floor). Lag is that of the last Instancer to see a
// marker.
func BenchmarkSharedInstancers(b *testing.B) {
	cfg := churnConfigFromEnv(b)
	count := 50
	if v := os.Getenv(envSharedInstancers); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("%s=%q: want a positive count", envSharedInstancers, v)
		}
		count = n
	}
	srv := etcdtest.NewServer(b)
	admin := srv.Client(b)
	for _, n := range cfg.ns {
		b.Run(fmt.Sprintf("instances=%d/instancers=%d", n, count), func(b *testing.B) {
			preload(b, admin, n)
			base := churn(b, admin, n, cfg, newMarkers())
			clearMarkers(b, admin)
			for _, impl := range []string{"rawwatch", "shared", "unshared"} {
				b.Run("impl="+impl, func(b *testing.B) {
					time.Sleep(settleTime)
					m := newMarkers()
					s := newSeenBy(m, count)
					var stop func()
					switch impl {
					case "rawwatch":
						s = newSeenBy(m, 1)
						stop = rawWatch(b, srv, n, m)
					default:
						stop = manyInstancers(b, srv, count, impl == "shared", s)
					}
					time.Sleep(settleTime)
					phase := churn(b, admin, n, cfg, m)
					var lags []time.Duration
					var unseen int
					if impl == "rawwatch" {
						lags, unseen = m.wait(time.Now().Add(cfg.drain))
					} else {
						lags, unseen = s.wait(time.Now().Add(cfg.drain))
					}
					stop()
					clearMarkers(b, admin)
					if len(lags) == 0 {
						b.Fatal("no marker was put")
					}
					ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
					b.ReportMetric(ms(lags[len(lags)/2]), "lag-p50-ms")
					b.ReportMetric(ms(lags[len(lags)*99/100]), "lag-p99-ms")
					b.ReportMetric(float64(unseen), "markers-unseen")
					b.ReportMetric((phase.cpu - base.cpu).Seconds(), "cpu-s")
					b.ReportMetric(0, "ns/op")
				})
			}
		})
	}
}
