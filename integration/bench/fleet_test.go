package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/etcdtest"
)

// Environment variables of BenchmarkFleet. The defaults are small enough
// for a laptop or CI; docs/benchmarks.md gives the command for the sizes of
// its table.
const (
	envFleetC            = "ETCDSD_FLEET_C"             // client counts, default "10"
	envFleetN            = "ETCDSD_FLEET_N"             // instance counts, default "1000"
	envFleetEtcd         = "ETCDSD_FLEET_ETCD"          // setups among single,proxy,cluster; default single,cluster (+proxy with ETCDSD_FLEET_GRPC_PROXY)
	envFleetKinds        = "ETCDSD_FLEET_KINDS"         // client kinds among raw,etcdsd,gokit; default all
	envFleetGRPCProxy    = "ETCDSD_FLEET_GRPC_PROXY"    // an etcd binary with `grpc-proxy start`, for setup proxy
	envFleetChurnSeconds = "ETCDSD_FLEET_CHURN_SECONDS" // churn phase length, default 5
	envFleetChurnRate    = "ETCDSD_FLEET_CHURN_RATE"    // puts per second during churn, default 10
	envFleetStarters     = "ETCDSD_FLEET_STARTERS"      // clients started at once, default 8
)

const (
	// fleetMarkEvery is how often the churn phase puts a mark.
	fleetMarkEvery = 250 * time.Millisecond
	// fleetSeeTimeout bounds the wait for every client to see a mark.
	fleetSeeTimeout = 30 * time.Second
	// fleetSettlePolls polls settleEvery apart with no new range read and
	// no byte sent end a phase: the reads a write or a restart causes are
	// over.
	fleetSettlePolls = 4
	fleetSettleMax   = 30 * time.Second
)

type fleetConfig struct {
	cs, ns      []int
	setups      []string
	kinds       []fleetKind
	grpcProxy   string
	churnFor    time.Duration
	churnRate   int
	starters    int
	settleEvery time.Duration // between polls of /metrics while a phase settles
}

func fleetConfigFromEnv(tb testing.TB) fleetConfig {
	cfg := fleetConfig{
		cs: []int{10}, ns: []int{1000},
		setups: []string{"single", "cluster"}, kinds: fleetKinds,
		grpcProxy: os.Getenv(envFleetGRPCProxy),
		churnFor:  5 * time.Second, churnRate: 10, starters: 8, settleEvery: 250 * time.Millisecond,
	}
	if cfg.grpcProxy != "" {
		cfg.setups = append(cfg.setups, "proxy")
	}
	counts := func(name string, dst *[]int) {
		s := os.Getenv(name)
		if s == "" {
			return
		}
		*dst = nil
		for f := range strings.SplitSeq(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				tb.Fatalf("%s=%q: want a comma-separated list of positive counts", name, s)
			}
			*dst = append(*dst, n)
		}
	}
	counts(envFleetC, &cfg.cs)
	counts(envFleetN, &cfg.ns)
	one := func(name string, dst *int) {
		var ns []int
		counts(name, &ns)
		if len(ns) == 1 {
			*dst = ns[0]
		} else if ns != nil {
			tb.Fatalf("%s: want one positive count", name)
		}
	}
	one(envFleetChurnRate, &cfg.churnRate)
	one(envFleetStarters, &cfg.starters)
	var secs int
	one(envFleetChurnSeconds, &secs)
	if secs > 0 {
		cfg.churnFor = time.Duration(secs) * time.Second
	}
	if s := os.Getenv(envFleetEtcd); s != "" {
		cfg.setups = nil
		for f := range strings.SplitSeq(s, ",") {
			f = strings.TrimSpace(f)
			if f != "single" && f != "proxy" && f != "cluster" {
				tb.Fatalf("%s=%q: want setups among single, proxy, cluster", envFleetEtcd, s)
			}
			if f == "proxy" && cfg.grpcProxy == "" {
				tb.Fatalf("%s=%q: setup proxy needs %s, an etcd binary with grpc-proxy", envFleetEtcd, s, envFleetGRPCProxy)
			}
			cfg.setups = append(cfg.setups, f)
		}
	}
	if s := os.Getenv(envFleetKinds); s != "" {
		cfg.kinds = nil
		for f := range strings.SplitSeq(s, ",") {
			i := slices.IndexFunc(fleetKinds, func(k fleetKind) bool { return k.name == strings.TrimSpace(f) })
			if i < 0 {
				tb.Fatalf("%s=%q: want kinds among raw, etcdsd, gokit", envFleetKinds, s)
			}
			cfg.kinds = append(cfg.kinds, fleetKinds[i])
		}
	}
	return cfg
}

// A fleetEtcd is the etcd a fleet talks to: a single member process
// ("single"), the same behind a grpc-proxy process ("proxy"), or three
// member processes ("cluster").
type fleetEtcd struct {
	setup   string
	proc    *etcdtest.Process        // single, proxy
	cluster *etcdtest.ProcessCluster // cluster
	proxy   *grpcProxy               // proxy
	admin   *clientv3.Client         // straight to etcd: preload, churn, marks
	members []string                 // etcd's endpoints, whose /metrics are read
	dial    []string                 // what the fleet's clients dial
}

func newFleetEtcd(tb testing.TB, setup string, cfg fleetConfig) *fleetEtcd {
	tb.Helper()
	e := &fleetEtcd{setup: setup}
	switch setup {
	case "cluster":
		e.cluster = etcdtest.StartProcessCluster(tb, 3)
		e.members = e.cluster.Endpoints()
		e.admin = e.cluster.Client(tb)
		e.cluster.Leader(10 * time.Second)
	default:
		e.proc = etcdtest.StartProcess(tb)
		e.members = e.proc.Endpoints()
		e.admin = e.proc.Client(tb)
	}
	e.dial = e.members
	if setup == "proxy" {
		e.proxy = startGRPCProxy(tb, cfg.grpcProxy, e.members)
		e.dial = []string{e.proxy.endpoint}
	}
	return e
}

// lastPhase names the disruption the setup runs after start and churn.
func (e *fleetEtcd) lastPhase() string {
	if e.cluster != nil {
		return "leader"
	}
	return "restart"
}

// A phaseResult is what one phase of one kind of fleet measured.
type phaseResult struct {
	phase    string
	load     etcdLoad
	see      []time.Duration // per mark, from its put until every client saw it, sorted
	unseen   int             // marks some client did not see within fleetSeeTimeout
	puts     []time.Duration // put latencies during churn, sorted
	putRate  float64         // puts per second reached during churn
	wall     time.Duration   // start: until every client held every instance
	proxyCPU time.Duration   // proxy setup: the grpc-proxy's CPU time
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, int(float64(len(ds))*q))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// metrics returns the phase's figures by benchmark unit.
func (r phaseResult) metrics() map[string]float64 {
	m := map[string]float64{
		"range_reads":  r.load.rangeReads,
		"watchers":     r.load.watchers,
		"MB_sent":      r.load.sentBytes / 1e6,
		"etcd_cpu_s":   r.load.cpuSeconds,
		"etcd_rss_MB":  r.load.rssBytes / 1e6,
		"see_write_ms": ms(quantile(r.see, 0.99)),
		"unseen":       float64(r.unseen),
	}
	if r.phase == "churn" {
		m["see_write_p50_ms"] = ms(quantile(r.see, 0.5))
		m["put_p99_ms"] = ms(quantile(r.puts, 0.99))
		m["puts/s"] = r.putRate
	}
	if r.phase == "start" {
		m["start_s"] = r.wall.Seconds()
	}
	if r.proxyCPU > 0 {
		m["proxy_cpu_s"] = r.proxyCPU.Seconds()
	}
	return m
}

// A fleetRow is one line of the summary table.
type fleetRow struct {
	setup, kind string
	c, n        int
	r           phaseResult
}

// BenchmarkFleet measures what a fleet of C clients, each its own clientv3
// connection (a process, as etcd sees it) with one watcher of a prefix
// holding N instances, asks of etcd, which runs in processes of its own so
// that its /metrics, CPU and memory are its alone. Three kinds of client run
// one after the other on the same etcd: a raw clientv3 watch (the floor),
// etcdsd's etcdv3.Instancer and go-kit's sd/etcdv3 Instancer. Each goes
// through phases: start (the fleet connects and reads), churn (puts at a
// fixed rate), and restart (a single member stopped and started again with
// its data) or leader (the leader of three members killed). Each phase
// reports etcd's Range RPCs, watchers, bytes sent, CPU and RSS from etcd's
// own /metrics, and the time until every client saw a write. At the end it
// prints the figures as a markdown table. Run it with -benchtime 1x; see
// fleetConfigFromEnv for the sizes.
func BenchmarkFleet(b *testing.B) {
	cfg := fleetConfigFromEnv(b)
	var rows []fleetRow
	for _, setup := range cfg.setups {
		b.Run("etcd="+setup, func(b *testing.B) {
			for _, n := range cfg.ns {
				b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
					e := newFleetEtcd(b, setup, cfg)
					preload(b, e.admin, n)
					for _, c := range cfg.cs {
						b.Run(fmt.Sprintf("C=%d", c), func(b *testing.B) {
							for _, kind := range cfg.kinds {
								b.Run("kind="+kind.name, func(b *testing.B) {
									results := measureFleet(b, e, kind, c, n, cfg)
									for _, r := range results {
										rows = append(rows, fleetRow{setup, kind.name, c, n, r})
										b.Run("phase="+r.phase, func(b *testing.B) {
											for unit, v := range r.metrics() {
												b.ReportMetric(v, unit)
											}
											b.ReportMetric(0, "ns/op")
										})
									}
								})
							}
						})
					}
				})
			}
		})
	}
	printFleetTable(os.Stdout, rows)
}

// measureFleet starts c clients of kind, runs the setup's phases, stops the
// clients, and returns what each phase measured.
func measureFleet(tb testing.TB, e *fleetEtcd, kind fleetKind, c, n int, cfg fleetConfig) []phaseResult {
	tb.Helper()
	p := newProbe(c)
	ctx := context.Background()
	var results []phaseResult

	// start
	before := e.sample()
	proxyCPU := e.proxyCPU(tb)
	t0 := time.Now()
	stops := startFleet(tb, ctx, e, kind, c, n, cfg.starters, p)
	defer func() {
		var wg sync.WaitGroup
		for _, stop := range stops {
			wg.Go(stop)
		}
		wg.Wait()
		// The next kind starts from the same N instances.
		if _, err := e.admin.Delete(ctx, fleetMarkerKey, clientv3.WithPrefix()); err != nil {
			tb.Errorf("delete marks: %v", err)
		}
		e.settle(tb, cfg.settleEvery)
	}()
	r := phaseResult{phase: "start", wall: time.Since(t0)}
	r.see, r.unseen = e.seeOne(tb, p)
	e.settle(tb, cfg.settleEvery)
	r.load = load(before, e.sample())
	r.proxyCPU = e.proxyCPU(tb) - proxyCPU
	results = append(results, r)

	// churn
	before, proxyCPU = e.sample(), e.proxyCPU(tb)
	r = phaseResult{phase: "churn"}
	r.puts, r.putRate, r.see, r.unseen = e.churn(tb, p, n, cfg)
	e.settle(tb, cfg.settleEvery)
	r.load = load(before, e.sample())
	r.proxyCPU = e.proxyCPU(tb) - proxyCPU
	results = append(results, r)

	// restart or leader
	before, proxyCPU = e.sample(), e.proxyCPU(tb)
	r = phaseResult{phase: e.lastPhase()}
	restore := e.disrupt(tb)
	r.see, r.unseen = e.seeOne(tb, p)
	e.settle(tb, cfg.settleEvery)
	r.load = load(before, e.sample())
	r.proxyCPU = e.proxyCPU(tb) - proxyCPU
	results = append(results, r)
	restore()
	return results
}

// startFleet starts c clients of kind, starters at a time, and returns
// their stop functions once every client holds the n instances.
func startFleet(tb testing.TB, ctx context.Context, e *fleetEtcd, kind fleetKind, c, n, starters int, p *probe) []func() {
	tb.Helper()
	stops := make([]func(), c)
	errs := make([]error, c)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(starters, c) {
		wg.Go(func() {
			for i := range next {
				stops[i], errs[i] = kind.start(ctx, e.dial, n, newWatcherState(p))
			}
		})
	}
	for i := range c {
		next <- i
	}
	close(next)
	wg.Wait()
	var started []func()
	var failed error
	for i, stop := range stops {
		if errs[i] != nil && failed == nil {
			failed = fmt.Errorf("client %d of %d: %w", i, c, errs[i])
		}
		if stop != nil {
			started = append(started, stop)
		}
	}
	if failed != nil {
		for _, stop := range started {
			stop()
		}
		tb.Fatalf("start %d %s clients: %v", c, kind.name, failed)
	}
	return started
}

// sample reads every etcd member's /metrics.
func (e *fleetEtcd) sample() fleetSample {
	return scrapeAll(e.members)
}

// proxyCPU returns the grpc-proxy's CPU time so far, or 0 without one.
func (e *fleetEtcd) proxyCPU(tb testing.TB) time.Duration {
	if e.proxy == nil {
		return 0
	}
	d, err := e.proxy.cpu()
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// settle waits until etcd has served no Range and sent no byte for
// fleetSettlePolls polls in a row, so that a phase counts the reads that
// its event caused, however late; it gives up after fleetSettleMax.
func (e *fleetEtcd) settle(tb testing.TB, every time.Duration) {
	tb.Helper()
	last, quiet := load(nil, e.sample()), 0
	for deadline := time.Now().Add(fleetSettleMax); quiet < fleetSettlePolls && time.Now().Before(deadline); {
		time.Sleep(every)
		now := load(nil, e.sample())
		if now.rangeReads == last.rangeReads && now.sentBytes == last.sentBytes {
			quiet++
		} else {
			quiet = 0
		}
		last = now
	}
}

// seeOne puts a mark and waits until every client has seen it or
// fleetSeeTimeout passes; see waitMarks.
func (e *fleetEtcd) seeOne(tb testing.TB, p *probe) ([]time.Duration, int) {
	tb.Helper()
	return waitMarks([]*mark{e.putMark(tb, p)})
}

// putMark puts a new mark of p and returns it.
func (e *fleetEtcd) putMark(tb testing.TB, p *probe) *mark {
	tb.Helper()
	key, m := p.next()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A fleet that saturates etcd (go-kit's, re-reading on every event) can
	// make etcd time a proposal out; the mark is then put again, and its
	// time to be seen counts from the first try.
	for {
		_, err := e.admin.Put(ctx, key, m.value)
		if err == nil {
			return m
		}
		if !errors.Is(err, rpctypes.ErrTimeout) || ctx.Err() != nil {
			tb.Fatalf("put mark %s: %v", key, err)
		}
		tb.Logf("put mark %s: %v; putting it again", key, err)
	}
}

// waitMarks waits until every client has seen each of marks or
// fleetSeeTimeout passes. It returns, sorted, how long each mark took to
// reach every client (an unseen one counts with its age when the wait
// ended, a lower bound), and how many marks some client did not see.
func waitMarks(marks []*mark) ([]time.Duration, int) {
	timer := time.NewTimer(fleetSeeTimeout)
	defer timer.Stop()
	expired := false
	var see []time.Duration
	unseen := 0
	for _, m := range marks {
		if !expired {
			select {
			case <-m.all:
			case <-timer.C:
				expired = true
			}
		}
		select {
		case <-m.all:
			see = append(see, m.took)
		default:
			unseen++
			see = append(see, time.Since(m.put))
		}
	}
	slices.Sort(see)
	return see, unseen
}

// churn puts cfg.churnRate new addresses per second to random instances
// for cfg.churnFor, one put at a time, and a mark every fleetMarkEvery.
// It returns the sorted put latencies, the rate reached, and the marks'
// times until every client saw them.
func (e *fleetEtcd) churn(tb testing.TB, p *probe, n int, cfg fleetConfig) (puts []time.Duration, rate float64, see []time.Duration, unseen int) {
	tb.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(2, uint64(n)))
	tick := time.NewTicker(time.Second / time.Duration(cfg.churnRate))
	defer tick.Stop()
	var marks []*mark
	start := time.Now()
	nextMark := start
	for seq := 0; time.Since(start) < cfg.churnFor; seq++ {
		<-tick.C
		if time.Now().After(nextMark) {
			marks = append(marks, e.putMark(tb, p))
			nextMark = nextMark.Add(fleetMarkEvery)
		}
		i := rng.IntN(n)
		v := fmt.Sprintf("10.%d.%d.%d:%d", i/65536, i/256%256, i%256, 10000+seq%55000)
		t := time.Now()
		if _, err := e.admin.Put(ctx, fmt.Sprintf("%s%05d", prefix, i), v); err != nil {
			tb.Fatalf("churn put: %v", err)
		}
		puts = append(puts, time.Since(t))
	}
	rate = float64(len(puts)) / time.Since(start).Seconds()
	slices.Sort(puts)
	see, unseen = waitMarks(marks)
	return puts, rate, see, unseen
}

// disrupt stops etcd's single member (SIGTERM, as an operator's restart
// does; etcd then ends its clients' streams) and starts it again with its
// data, or kills the leader of the cluster and waits for a new one. It returns once
// etcd serves again, and returns a function that brings a killed cluster
// member back for the next kind.
func (e *fleetEtcd) disrupt(tb testing.TB) func() {
	tb.Helper()
	if e.cluster == nil {
		e.proc.Restart()
		return func() {}
	}
	leader := e.cluster.Leader(10 * time.Second)
	e.cluster.Member(leader).Kill()
	e.cluster.Leader(10 * time.Second)
	return func() {
		e.cluster.Member(leader).Restart()
		e.cluster.Leader(10 * time.Second)
	}
}

// printFleetTable writes rows as a markdown table.
func printFleetTable(w io.Writer, rows []fleetRow) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "| etcd | N | C | kind | phase | range_reads | watchers | MB_sent | etcd_cpu_s | etcd_rss_MB | see_write_ms (p99) | notes |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, row := range rows {
		r := row.r
		m := r.metrics()
		var notes []string
		switch r.phase {
		case "start":
			notes = append(notes, fmt.Sprintf("all held N after %.1f s", r.wall.Seconds()))
		case "churn":
			notes = append(notes, fmt.Sprintf("%.0f puts/s, put p99 %.1f ms, see p50 %.1f ms", r.putRate, m["put_p99_ms"], m["see_write_p50_ms"]))
		}
		if r.unseen > 0 {
			notes = append(notes, fmt.Sprintf("%d of %d writes not seen by all within %v", r.unseen, len(r.see), fleetSeeTimeout))
		}
		if r.proxyCPU > 0 {
			notes = append(notes, fmt.Sprintf("grpc-proxy %.2f CPU-s", r.proxyCPU.Seconds()))
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %.0f | %.0f | %.1f | %.2f | %.0f | %.1f | %s |\n",
			row.setup, row.n, row.c, row.kind, r.phase,
			m["range_reads"], m["watchers"], m["MB_sent"], m["etcd_cpu_s"], m["etcd_rss_MB"], m["see_write_ms"],
			strings.Join(notes, "; "))
	}
}

// TestFleetSmoke runs the fleet's phases on a single etcd process with two
// clients of the kinds that can be stopped completely (go-kit's client
// cannot be closed, and would leave goroutines for goleak to find), so that
// plain `go test` proves the benchmark's machinery in seconds.
func TestFleetSmoke(t *testing.T) {
	const c, n = 2, 20
	cfg := fleetConfig{churnFor: time.Second, churnRate: 10, starters: 2, settleEvery: 50 * time.Millisecond}
	e := newFleetEtcd(t, "single", cfg)
	preload(t, e.admin, n)
	for _, kind := range fleetKinds[:2] {
		t.Run(kind.name, func(t *testing.T) {
			results := measureFleet(t, e, kind, c, n, cfg)
			var phases []string
			for _, r := range results {
				t.Logf("%s: %v", r.phase, r.metrics())
				phases = append(phases, r.phase)
				if r.unseen > 0 || len(r.see) == 0 {
					t.Errorf("phase %s: %d of %d writes not seen by both clients", r.phase, r.unseen, len(r.see))
				}
				if r.load.watchers < c {
					t.Errorf("phase %s: etcd reports %v watchers, want at least %d", r.phase, r.load.watchers, c)
				}
			}
			if want := []string{"start", "churn", "restart"}; !slices.Equal(phases, want) {
				t.Fatalf("phases %v, want %v", phases, want)
			}
			if start := results[0].load; start.rangeReads < c || start.sentBytes <= 0 || start.cpuSeconds <= 0 || start.rssBytes <= 0 {
				t.Errorf("start: etcd's /metrics gave %+v; want at least %d Range RPCs and some bytes, CPU and RSS", start, c)
			}
		})
	}
}
