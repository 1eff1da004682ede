package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/go-kit/kit/sd/lb"
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/promsd"
)

// demoPrefix is where the demo's services register.
const demoPrefix = "/etcdsd-demo/services/greeter/"

// runDemo is the demo command: the project's whole job, narrated, on an
// embedded etcd (or an external one given with --endpoints).
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	endpoints := fs.String("endpoints", "", "comma-separated etcd endpoints to use instead of an embedded etcd (the restart step is then skipped)")
	withConsole := fs.Bool("console", false, "serve the web console during the demo (its URL is printed), and keep it open --console-linger after, narrating the traffic")
	linger := fs.Duration("console-linger", defaultLinger, "how long --console keeps serving after the demo")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: etcdsd demo [--endpoints host:port,...] [--console] [grpc]")
		fmt.Fprintln(fs.Output(), "\nRegisters three HTTP services in etcd, discovers them, balances requests over")
		fmt.Fprintln(fs.Output(), "them, shows failover and recovery from an etcd restart, then routes gRPC calls")
		fmt.Fprintln(fs.Output(), "by version. \"demo grpc\" runs only the gRPC part.")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, 1, stdout); err != nil {
		return err
	}
	d := &demo{out: stdout, consoleOn: *withConsole, linger: *linger}
	switch fs.Arg(0) {
	case "":
	case "grpc":
		d.grpcOnly = true
	default:
		return usageError{fmt.Errorf("unknown demo %q (want grpc, or nothing for the whole demo)", fs.Arg(0))}
	}
	defer d.cleanup()
	if *endpoints != "" {
		for ep := range strings.SplitSeq(*endpoints, ",") {
			if ep = strings.TrimSpace(ep); ep != "" {
				d.endpoints = append(d.endpoints, ep)
			}
		}
		if len(d.endpoints) == 0 {
			return usageError{fmt.Errorf("--endpoints %q names no endpoint", *endpoints)}
		}
	}
	timeout := 60 * time.Second
	if d.consoleOn {
		timeout += d.linger
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return d.run(ctx)
}

// demo holds what the demo started, so that cleanup stops all of it.
type demo struct {
	out       io.Writer
	endpoints []string
	etcd      *embeddedEtcd
	services  []*greeter
	clients   []*etcdv3.EtcdClient
	instancer *etcdv3.Instancer
	endpoint  *sd.DefaultEndpointer
	step      int
	grpcOnly  bool
	metrics   *etcdv3.Metrics      // every client's, served at /metrics
	registry  *prometheus.Registry // what /metrics serves
	metricsAt string               // the /metrics URL
	server    *http.Server         // serves /metrics
	consoleOn bool                 // demo --console
	linger    time.Duration        // how long the console stays after the demo
	console   *demoConsole
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "   "+format+"\n", args...)
}

func (d *demo) section(title string) {
	d.step++
	fmt.Fprintf(d.out, "\n%d. %s\n", d.step, title)
}

func (d *demo) run(ctx context.Context) error {
	d.section("Start etcd")
	if d.endpoints == nil {
		e, err := startEmbeddedEtcd()
		if err != nil {
			return err
		}
		d.etcd = e
		d.endpoints = []string{e.Endpoint()}
		d.say("Started an embedded etcd at %s (data in a temporary directory).", e.Endpoint())
	} else {
		d.say("Using the etcd at %s.", strings.Join(d.endpoints, ","))
	}

	if d.grpcOnly {
		d.section("Route gRPC calls by version")
		return runGRPCDemo(ctx, d.out, d.endpoints)
	}
	if err := d.serveMetrics(); err != nil {
		return err
	}
	d.say("Metrics of every client: %s (Prometheus text format).", d.metricsAt)
	if d.consoleOn {
		if err := d.startConsole(ctx); err != nil {
			return err
		}
	}

	d.section("Register three HTTP services")
	// Each service gets its own client, as separate processes would.
	for _, name := range []string{"greeter-1", "greeter-2", "greeter-3"} {
		if err := d.startService(ctx, name); err != nil {
			return err
		}
	}

	d.section("Discover them and balance requests")
	client, err := d.newClient(ctx)
	if err != nil {
		return err
	}
	d.instancer, err = etcdv3.NewInstancer(client, demoPrefix, log.NewNopLogger())
	if err != nil {
		return err
	}
	d.say("The Instancer watches %s and sees %d instances.", demoPrefix, len(d.instancer.State().Instances))
	d.endpoint = sd.NewEndpointer(d.instancer, httpFactory, log.NewNopLogger())
	call := lb.Retry(3, 2*time.Second, lb.NewRoundRobin(d.endpoint))
	d.say("go-kit's sd.NewEndpointer + lb.NewRoundRobin + lb.Retry run on it unchanged.")
	// go-kit's Endpointer takes the Instancer's first event on a goroutine
	// of its own: until then it has no endpoints.
	if err := d.waitInstances(ctx, len(d.services)); err != nil {
		return err
	}
	if err := d.traffic(ctx, call, 6); err != nil {
		return err
	}

	d.section("Fail over when an instance stops")
	victim := d.services[1]
	victim.stopHTTP()
	d.say("%s stopped answering (its key is still in etcd).", victim.name)
	if err := d.traffic(ctx, call, 6); err != nil {
		return err
	}
	d.say("Every request succeeded: lb.Retry moved on to the next instance.")
	victim.registrar.Deregister()
	if err := d.waitInstances(ctx, 2); err != nil {
		return err
	}
	d.say("%s deregistered; every subscriber dropped it within one watch event.", victim.name)
	if err := d.traffic(ctx, call, 4); err != nil {
		return err
	}

	d.section("Recover when etcd restarts")
	if d.etcd == nil {
		d.say("Skipped: the demo restarts only the etcd it embeds.")
	} else if err := d.restartEtcd(ctx, call); err != nil {
		return err
	}

	d.section("Route gRPC calls by version")
	if err := runGRPCDemo(ctx, d.out, d.endpoints); err != nil {
		return err
	}

	d.section("Read the metrics")
	if err := d.showMetrics(ctx); err != nil {
		return err
	}

	if d.consoleOn {
		d.section("Try the console")
		d.lingerConsole(ctx, call)
	}

	d.section("Shut down")
	d.say("Deregistering every service, stopping the Instancer and closing the clients.")
	fmt.Fprintln(d.out, "\nDemo finished: registered, discovered, balanced, failed over, recovered and routed by version.")
	return nil
}

func (d *demo) restartEtcd(ctx context.Context, call endpoint.Endpoint) error {
	errs := make(chan sd.Event, 1)
	d.instancer.Register(errs)
	defer d.instancer.Deregister(errs)
	d.etcd.Stop()
	d.say("etcd stopped.")
	if err := waitEvent(ctx, errs, func(ev sd.Event) bool { return ev.Err != nil }); err != nil {
		return fmt.Errorf("no error event while etcd was down: %w", err)
	}
	d.say("Subscribers were told once (%v) and kept their %d instances.", shortErr(d.instancer.State().Err), len(d.instancer.State().Instances))
	if err := d.traffic(ctx, call, 2); err != nil {
		return err
	}
	d.say("Requests still flow: the services do not need etcd to answer.")
	if err := d.etcd.Start(); err != nil {
		return err
	}
	d.say("etcd is back on the same port with the same data.")
	if err := d.startService(ctx, "greeter-4"); err != nil {
		return err
	}
	if err := d.waitInstances(ctx, 3); err != nil {
		return err
	}
	d.say("The Instancer reconnected and saw greeter-4, registered after the restart.")
	return d.traffic(ctx, call, 6)
}

func shortErr(err error) string {
	if errors.Is(err, etcdv3.ErrUnreachable) {
		return "etcd unreachable"
	}
	if err == nil {
		return "no error"
	}
	return err.Error()
}

func (d *demo) newClient(ctx context.Context) (*etcdv3.EtcdClient, error) {
	c, err := etcdv3.NewEtcdClient(ctx, d.endpoints, etcdv3.ClientOptions{DialTimeout: time.Second, RequestTimeout: 2 * time.Second, Metrics: d.metrics})
	if err != nil {
		return nil, err
	}
	d.clients = append(d.clients, c)
	return c, nil
}

func (d *demo) startService(ctx context.Context, name string) error {
	client, err := d.newClient(ctx)
	if err != nil {
		return err
	}
	g, err := startGreeter(name)
	if err != nil {
		return err
	}
	d.services = append(d.services, g)
	g.registrar = etcdv3.NewRegistrar(client, etcdv3.Service{
		Key:   demoPrefix + name,
		Value: g.url,
		TTL:   etcdv3.NewTTLOption(time.Second, 3*time.Second),
	}, log.NewNopLogger())
	if err := g.registrar.RegisterContext(ctx); err != nil {
		return err
	}
	d.say("%s listens on %s and is registered under %s%s (TTL 3s, heartbeat 1s).", name, g.url, demoPrefix, name)
	return nil
}

// traffic sends n requests and reports which instances answered.
func (d *demo) traffic(ctx context.Context, call endpoint.Endpoint, n int) error {
	counts := map[string]int{}
	for range n {
		reply, err := call(ctx, nil)
		if err != nil {
			return fmt.Errorf("request failed: %w", err)
		}
		counts[reply.(string)]++
	}
	names := make([]string, 0, len(counts))
	for name := range counts {
		names = append(names, name)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s×%d", name, counts[name])
	}
	d.say("%d requests answered by: %s.", n, strings.Join(parts, ", "))
	return nil
}

// waitInstances waits until the endpointer has n endpoints.
func (d *demo) waitInstances(ctx context.Context, n int) error {
	for {
		if eps, err := d.endpoint.Endpoints(); err == nil && len(eps) == n && len(d.instancer.State().Instances) == n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d instances (have %d): %w", n, len(d.instancer.State().Instances), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func waitEvent(ctx context.Context, ch <-chan sd.Event, cond func(sd.Event) bool) error {
	for {
		select {
		case ev := <-ch:
			if cond(ev) {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (d *demo) cleanup() {
	if d.console != nil {
		d.console.stop()
	}
	for _, g := range d.services {
		if g.registrar != nil {
			g.registrar.Deregister()
		}
		g.stopHTTP()
	}
	if d.endpoint != nil {
		d.endpoint.Close()
	}
	if d.instancer != nil {
		d.instancer.Stop()
	}
	for _, c := range d.clients {
		c.Close()
	}
	if d.server != nil {
		d.server.Close()
	}
	if d.etcd != nil {
		d.etcd.Close()
	}
}

// greeter is a tiny HTTP service that answers with its name.
type greeter struct {
	name      string
	url       string
	server    *http.Server
	registrar *etcdv3.Registrar
	once      sync.Once
	done      chan struct{}
}

func startGreeter(name string) (*greeter, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	g := &greeter{name: name, url: "http://" + l.Addr().String(), done: make(chan struct{})}
	g.server = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, name)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() {
		defer close(g.done)
		g.server.Serve(l)
	}()
	return g, nil
}

func (g *greeter) stopHTTP() {
	g.once.Do(func() {
		g.server.Close()
		<-g.done
	})
}

// httpFactory turns an instance value (a base URL) into an endpoint that
// GETs it and returns the body.
func httpFactory(instance string) (endpoint.Endpoint, io.Closer, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	return func(ctx context.Context, _ any) (any, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, instance, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		return string(body), nil
	}, nil, nil
}

// serveMetrics serves the metrics of every client the demo makes at
// /metrics on a free loopback port.
func (d *demo) serveMetrics() error {
	d.registry = prometheus.NewRegistry()
	d.metrics = promsd.ClientMetrics(d.registry, "etcdsd")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("serve metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.registry, promhttp.HandlerOpts{}))
	d.server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	d.metricsAt = "http://" + l.Addr().String() + "/metrics"
	go d.server.Serve(l) // ends with Close, in cleanup
	return nil
}

// showMetrics reads /metrics as a scraper would and tells what it says of
// the registrations and the Instancer.
func (d *demo) showMetrics(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.metricsAt, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("read metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read metrics: %w", err)
	}
	d.say("GET %s says, among others:", d.metricsAt)
	for line := range strings.SplitSeq(string(body), "\n") {
		for _, name := range []string{"etcdsd_registrations{", "etcdsd_instances{", "etcdsd_watch_errors_total{", "etcdsd_resumes_total{", "etcdsd_resyncs_total{"} {
			if strings.HasPrefix(line, name) {
				d.say("  %s", line)
			}
		}
	}
	return nil
}
