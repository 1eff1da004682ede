package history

import (
	"context"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/go-kit/log"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
)

// Environment variables of the checker.
const (
	envSeed     = "ETCDSD_HISTORY_SEED"     // replays the scenarios of one seed
	envDuration = "ETCDSD_HISTORY_DURATION" // runs the scenarios in a loop that long
)

// Timing of the consumers' client and of the registrars, as in
// integration/faults: an outage shows within a fraction of a second, and a
// lease expires within a scenario.
const (
	dialTimeout    = 400 * time.Millisecond
	requestTimeout = 5 * time.Second // a snapshot of 10,000 keys under -race
	heartbeat      = etcdv3.MinHeartbeat
	ttl            = 2 * time.Second
	// converge bounds how long consumers may take to reach the final state
	// once writes stop.
	converge = 20 * time.Second
)

// scene is one scenario being run: etcd, a client straight to it that
// writes and records the history, a fault proxy in front of each endpoint
// for the consumers, and the checker.
type scene struct {
	t       *testing.T
	seed    int64
	rng     *rand.Rand
	tally   *tally
	k       *checker
	direct  *clientv3.Client
	proxies []*etcdtest.Proxy
}

type scenario struct {
	name string
	run  func(s *scene)
}

var scenarios = []scenario{
	{"churn and a prefix delete of 10000 keys", churn},
	{"latency and a pause that parks the watch", latencyAndPause},
	{"partition shorter than the TTL", partition(false)},
	{"partition longer than the TTL", partition(true)},
	{"compaction during a gap", compactionInGap},
	{"compaction during a partition", compactionInPartition},
	{"leader killed", leaderKilled},
	{"etcd restarted", etcdRestarted},
}

// TestHistory runs every scenario with a random seed (ETCDSD_HISTORY_SEED
// replays one), or, with ETCDSD_HISTORY_DURATION, all of them in a loop
// with a new seed each round for that long, and checks every state each
// consumer delivered against etcd's history.
func TestHistory(t *testing.T) {
	seed := time.Now().UnixNano()
	if v := os.Getenv(envSeed); v != "" {
		var err error
		if seed, err = strconv.ParseInt(v, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", envSeed, v, err)
		}
	}
	var until time.Time
	if v := os.Getenv(envDuration); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", envDuration, v, err)
		}
		until = time.Now().Add(d)
	}
	tally := newTally()
	defer func() { t.Log(tally.summary()) }()
	master := rand.New(rand.NewPCG(uint64(seed), 0))
	for round := 0; ; round++ {
		t.Logf("round %d: seed %d (replay with %s=%d)", round, seed, envSeed, seed)
		for _, sc := range scenarios {
			t.Run(sc.name, func(t *testing.T) { runScenario(t, sc, seed, tally) })
		}
		if time.Now().After(until) {
			return
		}
		seed = master.Int64()
	}
}

func runScenario(t *testing.T, sc scenario, seed int64, tally *tally) {
	t.Logf("seed %d", seed)
	h := fnv.New64a()
	h.Write([]byte(sc.name))
	sc.run(&scene{t: t, seed: seed, rng: rand.New(rand.NewPCG(uint64(seed), h.Sum64())), tally: tally})
}

// start records the history of etcd at endpoints through direct, a client
// with no fault proxy in between, and puts a fault proxy in front of each
// endpoint for the consumers.
func (s *scene) start(endpoints []string, direct *clientv3.Client) {
	s.direct = direct
	hist := record(s.t, direct, prefix)
	s.t.Cleanup(func() {
		s.tally.mu.Lock()
		s.tally.events += hist.eventCount()
		s.tally.mu.Unlock()
	})
	s.k = &checker{t: s.t, seed: s.seed, prefix: prefix, h: hist, tally: s.tally}
	for _, ep := range endpoints {
		s.proxies = append(s.proxies, etcdtest.NewProxy(s.t, ep))
	}
}

func (s *scene) fault(kind string) { s.tally.add(s.tally.faults, kind, 1) }

// client returns an etcdv3 client of etcd through the fault proxies,
// closed at cleanup (before etcd stops).
func (s *scene) client() *etcdv3.EtcdClient {
	s.t.Helper()
	eps := make([]string, len(s.proxies))
	for i, p := range s.proxies {
		eps[i] = p.Endpoint()
	}
	c, err := etcdv3.NewEtcdClient(context.Background(), eps, etcdv3.ClientOptions{
		DialTimeout: dialTimeout, RequestTimeout: requestTimeout, Logger: log.NewNopLogger(),
	})
	if err != nil {
		s.t.Fatalf("new client of %v: %v", eps, err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// between returns a random duration in [lo, hi).
func (s *scene) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)))
}

// writers starts 4 writers of up to 300 keys each.
func (s *scene) writers() *writers { return startWriters(s.t, s.direct, s.rng, 4, 300) }

// cut partitions the consumers from etcd; heal ends it (see
// integration/faults).
func (s *scene) cut() {
	for _, p := range s.proxies {
		p.Blackhole()
		p.DropConnections()
	}
}

func (s *scene) heal() {
	for _, p := range s.proxies {
		p.Unblackhole()
		p.DropConnections()
	}
}

// finish stops the writers and checks that every consumer reaches the
// final state.
func (s *scene) finish(w *writers) {
	w.stop()
	s.k.converge(converge)
}

// churn: 10,000 keys written first, consumers from the start (reading
// them) and consumers started mid-churn, on a client of their own and on
// the first consumers' client (whose watches they share: they start from
// its memory, mid-churn), and at a random moment the 10,000 keys deleted
// with one prefix delete.
func churn(s *scene) {
	srv := etcdtest.NewServer(s.t)
	s.start(srv.Endpoints(), srv.Client(s.t))
	bulkKeys(s.t, s.direct, 10000)
	first := s.client()
	s.k.follow(s.t, first, "")
	w := s.writers()
	time.Sleep(s.between(200*time.Millisecond, time.Second))
	s.k.follow(s.t, s.client(), " (started mid-churn)")
	s.k.follow(s.t, first, " (started mid-churn, sharing the first client)")
	time.Sleep(s.between(0, time.Second))
	bulkDelete(s.t, s.direct)
	time.Sleep(s.between(200*time.Millisecond, time.Second))
	s.finish(w)
}

// latencyAndPause: latency on the consumers' link, consumers started
// mid-churn over it, and a pause of the link while the writers write, long
// enough for etcd to fall more than 1,000 revisions ahead of the watch.
func latencyAndPause(s *scene) {
	srv := etcdtest.NewServer(s.t)
	s.start(srv.Endpoints(), srv.Client(s.t))
	p := s.proxies[0]
	c := s.client()
	s.k.follow(s.t, c, "")
	p.SetLatency(s.between(20*time.Millisecond, 150*time.Millisecond))
	s.fault("latency")
	w := s.writers()
	time.Sleep(s.between(200*time.Millisecond, 800*time.Millisecond))
	s.k.follow(s.t, s.client(), " (started mid-churn)")
	before := w.writes.Load()
	p.Pause()
	s.fault("pause")
	time.Sleep(s.between(1500*time.Millisecond, 3*time.Second))
	// Each write is a revision: etcd ends well over 1,000 revisions ahead.
	itest.Eventually(s.t, 60*time.Second, "1,200 writes while the link is paused", func() bool {
		return w.writes.Load()-before >= 1200
	})
	p.Unpause()
	time.Sleep(s.between(300*time.Millisecond, time.Second))
	p.ClearLatency()
	s.finish(w)
}

// partition cuts the consumers and three registrars off etcd for less, or
// more, than the registrars' TTL.
func partition(longer bool) func(*scene) {
	return func(s *scene) {
		srv := etcdtest.NewServer(s.t)
		s.start(srv.Endpoints(), srv.Client(s.t))
		c := s.client()
		for i := range 3 {
			id := "r" + strconv.Itoa(i)
			r := etcdv3.NewRegistrar(c, etcdv3.Service{Key: prefix + id, Value: value(id), TTL: etcdv3.NewTTLOption(heartbeat, ttl)}, log.NewNopLogger())
			r.Register()
			s.t.Cleanup(r.Deregister)
		}
		s.k.follow(s.t, c, "")
		w := s.writers()
		time.Sleep(s.between(200*time.Millisecond, 800*time.Millisecond))
		d := s.between(300*time.Millisecond, ttl-heartbeat)
		kind := "partition < TTL"
		if longer {
			// The lease outlives the last keepalive by the TTL, and etcd
			// looks for expired leases every 500 ms.
			d, kind = s.between(ttl+2*heartbeat, 2*ttl+heartbeat), "partition > TTL"
		}
		s.cut()
		s.fault(kind)
		time.Sleep(d)
		s.heal()
		itest.Eventually(s.t, converge, "every registrar's key in etcd after the partition", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			resp, err := s.direct.Get(ctx, prefix+"r", clientv3.WithPrefix(), clientv3.WithCountOnly())
			return err == nil && resp.Count == 3
		})
		s.finish(w)
		if expired := s.k.h.deletes(prefix + "r"); longer && expired == 0 {
			s.t.Errorf("seed %d: no registrar's key expired in a partition of %v, longer than the TTL", s.k.seed, d)
		}
	}
}

// compactionInGap holds the consumers' traffic while the writers write,
// compacts etcd's history up to its current revision, and drops their
// connections: clientv3 resumes each watch at once from the revision after
// its last event, which is compacted by then.
func compactionInGap(s *scene) {
	srv := etcdtest.NewServer(s.t)
	if srv.External() {
		s.t.Skipf("compaction would compact the whole external etcd of %s", etcdtest.EnvEndpoints)
	}
	s.start(srv.Endpoints(), srv.Client(s.t))
	p := s.proxies[0]
	s.k.follow(s.t, s.client(), "")
	w := s.writers()
	time.Sleep(s.between(200*time.Millisecond, 800*time.Millisecond))
	p.Pause()
	s.fault("pause")
	time.Sleep(s.between(300*time.Millisecond, time.Second))
	rev, err := s.k.h.current(syncWithin)
	if err == nil {
		err = s.k.h.syncTo(rev, syncWithin) // the history must not be compacted away
	}
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = s.direct.Compact(ctx, rev)
	cancel()
	if err != nil {
		s.t.Fatalf("compact at %d: %v", rev, err)
	}
	s.fault("compaction")
	p.DropConnections()
	p.Unpause()
	time.Sleep(s.between(300*time.Millisecond, time.Second))
	s.finish(w)
}

// compactionInPartition cuts the consumers off for longer than the dial
// timeout, so that they report an outage, while the writers write and etcd
// compacts its history up to its current revision: each resumed watch
// finds its revision compacted and reads one snapshot, whose net
// difference must bring a state etcd had.
func compactionInPartition(s *scene) {
	srv := etcdtest.NewServer(s.t)
	if srv.External() {
		s.t.Skipf("compaction would compact the whole external etcd of %s", etcdtest.EnvEndpoints)
	}
	s.start(srv.Endpoints(), srv.Client(s.t))
	s.k.follow(s.t, s.client(), "")
	w := s.writers()
	time.Sleep(s.between(200*time.Millisecond, 800*time.Millisecond))
	s.cut()
	s.fault("partition with compaction")
	time.Sleep(s.between(dialTimeout+200*time.Millisecond, 3*dialTimeout))
	rev, err := s.k.h.current(syncWithin)
	if err == nil {
		err = s.k.h.syncTo(rev, syncWithin) // the history must not be compacted away
	}
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	_, err = s.direct.Compact(ctx, rev)
	cancel()
	if err != nil {
		s.t.Fatalf("compact at %d: %v", rev, err)
	}
	time.Sleep(s.between(100*time.Millisecond, 500*time.Millisecond))
	s.heal()
	time.Sleep(s.between(300*time.Millisecond, time.Second))
	s.finish(w)
}

// leaderKilled stops the leader of a 3-member cluster under churn and
// starts it again. Every client's connections to it break at once, as when
// its process dies: the writers' and the history's go through relays that
// only do that (embedded etcd would otherwise wait for their streams to
// end before it stops).
func leaderKilled(s *scene) {
	cl := etcdtest.NewCluster(s.t, 3)
	relays := make([]*etcdtest.Proxy, 3)
	eps := make([]string, 3)
	for i, ep := range cl.Endpoints() {
		relays[i] = etcdtest.NewProxy(s.t, ep)
		eps[i] = relays[i].Endpoint()
	}
	direct, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { direct.Close() })
	s.start(cl.Endpoints(), direct)
	s.k.follow(s.t, s.client(), "")
	w := s.writers()
	time.Sleep(s.between(200*time.Millisecond, 800*time.Millisecond))
	leader := cl.Leader()
	crash := []*etcdtest.Proxy{s.proxies[leader], relays[leader]}
	for _, p := range crash {
		p.Blackhole()
		p.DropConnections()
	}
	cl.StopMember(leader)
	s.fault("leader killed")
	time.Sleep(s.between(500*time.Millisecond, 1500*time.Millisecond))
	cl.StartMember(leader)
	for _, p := range crash {
		p.Unblackhole()
	}
	time.Sleep(s.between(200*time.Millisecond, 800*time.Millisecond))
	s.finish(w)
}

// etcdRestarted kills etcd (a separate process) with SIGKILL under churn
// and starts it again on the same ports and data.
func etcdRestarted(s *scene) {
	p := etcdtest.StartProcess(s.t)
	s.start(p.Endpoints(), p.Client(s.t))
	s.k.follow(s.t, s.client(), "")
	w := s.writers()
	time.Sleep(s.between(200*time.Millisecond, 800*time.Millisecond))
	p.Kill()
	s.fault("etcd killed and restarted")
	time.Sleep(s.between(100*time.Millisecond, time.Second))
	p.Restart()
	time.Sleep(s.between(300*time.Millisecond, time.Second))
	s.finish(w)
}
