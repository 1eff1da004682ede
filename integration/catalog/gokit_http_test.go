package catalog_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/go-kit/kit/sd/lb"

	"github.com/etcdsd/etcdsd/endpointer"
	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/itest"
)

// These tests run the README's Usage as it is written (etcdv3.NewEtcdClient,
// NewRegistrar and Register, NewInstancer, go-kit's sd.NewEndpointer with a
// factory of HTTP endpoints, lb.Retry over lb.NewRoundRobin) against real
// HTTP servers on 127.0.0.1 and the etcdsd binary's drain, undrain and
// set-weight.

// backend is one HTTP instance that counts the requests it serves.
type backend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

// startBackends starts one HTTP server per name, closed at cleanup.
func startBackends(t *testing.T, names ...string) []*backend {
	t.Helper()
	out := make([]*backend, len(names))
	for i, name := range names {
		b := &backend{name: name}
		b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			b.hits.Add(1)
			io.WriteString(w, b.name)
		}))
		t.Cleanup(b.srv.Close)
		out[i] = b
	}
	return out
}

// httpFactory is the go-kit factory a README reader writes: an HTTP
// endpoint for "host:port" through url.Parse("http://" + instance). It
// records every instance string it was given.
type httpFactory struct {
	client *http.Client
	mu     sync.Mutex
	got    []string
}

func newHTTPFactory(t *testing.T) *httpFactory {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &httpFactory{client: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

func (f *httpFactory) factory(instance string) (endpoint.Endpoint, io.Closer, error) {
	f.mu.Lock()
	f.got = append(f.got, instance)
	f.mu.Unlock()
	u, err := url.Parse("http://" + instance)
	if err != nil {
		return nil, nil, err
	}
	return func(ctx context.Context, _ any) (any, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, err
		}
		resp, err := f.client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: %s", u, resp.Status)
		}
		return string(body), nil
	}, nil, nil
}

// given returns the instance strings the factory was given.
func (f *httpFactory) given() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.got)
}

// usage is the README's Usage, wired for one service.
type usage struct {
	client    *etcdv3.EtcdClient
	instancer *etcdv3.Instancer
	factory   *httpFactory
	call      endpoint.Endpoint
}

// readmeUsage registers values (id → value) under prefix and builds the
// client side of the README's Usage; wrap, if set, wraps the factory (as
// instance.AddressFactory does).
func readmeUsage(t *testing.T, endpoints []string, prefix string, values map[string]string, wrap func(sd.Factory) sd.Factory) *usage {
	t.Helper()
	logger := itest.Logger(t)
	ctx := context.Background()
	client, err := etcdv3.NewEtcdClient(ctx, endpoints, etcdv3.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })

	// In the service: register, keep alive, come back after any lease loss.
	for id, v := range values {
		registrar := etcdv3.NewRegistrar(client, etcdv3.Service{
			Key:   prefix + id,
			Value: v,
			TTL:   etcdv3.NewTTLOption(3*time.Second, 9*time.Second),
		}, logger)
		registrar.Register()
		t.Cleanup(registrar.Deregister)
	}

	// In the client: watch the prefix and balance over what is there.
	instancer, err := etcdv3.NewInstancer(client, prefix, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(instancer.Stop)
	f := newHTTPFactory(t)
	factory := sd.Factory(f.factory)
	if wrap != nil {
		factory = wrap(factory)
	}
	endpointer := sd.NewEndpointer(instancer, factory, logger)
	t.Cleanup(endpointer.Close)
	call := lb.Retry(3, time.Second, lb.NewRoundRobin(endpointer))

	itest.Eventually(t, 5*time.Second, fmt.Sprintf("%d endpoints", len(values)), func() bool {
		eps, err := endpointer.Endpoints()
		return err == nil && len(eps) == len(values)
	})
	return &usage{client: client, instancer: instancer, factory: f, call: call}
}

// mustCall makes one request through the balancer and returns who served it.
func (u *usage) mustCall(t *testing.T) string {
	t.Helper()
	resp, err := u.call(context.Background(), nil)
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	return resp.(string)
}

// avoids reports whether n calls, which must all succeed, all miss b.
func (u *usage) avoids(t *testing.T, b *backend, n int) bool {
	before := b.hits.Load()
	for range n {
		u.mustCall(t)
	}
	return b.hits.Load() == before
}

// reaches reports whether one of n calls, which must all succeed, reaches
// b.
func (u *usage) reaches(t *testing.T, b *backend, n int) bool {
	before := b.hits.Load()
	for range n {
		u.mustCall(t)
	}
	return b.hits.Load() > before
}

func TestReadmeUsageHonoursTheCLIsDrainOverHTTP(t *testing.T) {
	srv := etcdtest.NewServer(t)
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	bs := startBackends(t, "g1", "g2", "g3")
	u := readmeUsage(t, srv.Endpoints(), "/services/greeter/", map[string]string{"g1": bs[0].addr(), "g2": bs[1].addr(), "g3": bs[2].addr()}, nil)
	for _, b := range bs {
		itest.Eventually(t, 5*time.Second, "traffic to "+b.name, func() bool { return u.reaches(t, b, 3) })
	}
	drained := bs[1]

	start := time.Now()
	r := etcdsd(t, "drain", "greeter", "g2", ep).ok(t)
	itest.Eventually(t, time.Second, "no request to the drained g2 within 1 s of the drain", func() bool { return u.avoids(t, drained, 6) })
	took := time.Since(start)
	if !u.avoids(t, drained, 30) {
		t.Fatal("g2 got requests again while drained")
	}
	t.Logf("drain: command ran %v; g2 got no more requests %v after it started", r.took, took)
	if got := u.instancer.State().Instances; len(got) != 2 || slices.Contains(got, drained.addr()) {
		t.Fatalf("sd.Event instances %v, want g1 and g3", got)
	}

	start = time.Now()
	r = etcdsd(t, "undrain", "greeter", "g2", ep).ok(t)
	itest.Eventually(t, time.Second, "requests to g2 within 1 s of the undrain", func() bool { return u.reaches(t, drained, 3) })
	t.Logf("undrain: command ran %v; g2 served again %v after it started", r.took, time.Since(start))
}

func TestReadmeUsageFactoryKeepsGettingHostPortAfterSetWeight(t *testing.T) {
	srv := etcdtest.NewServer(t)
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	bs := startBackends(t, "a", "b")
	u := readmeUsage(t, srv.Endpoints(), "/services/plainsvc/", map[string]string{"a": bs[0].addr(), "b": bs[1].addr()}, nil)
	for _, b := range bs {
		itest.Eventually(t, 5*time.Second, "traffic to "+b.name, func() bool { return u.reaches(t, b, 3) })
	}

	etcdsd(t, "set-weight", "plainsvc", "a", "5", ep).ok(t)
	itest.Eventually(t, time.Second, "the override in the Instancer's Feed", func() bool {
		for _, ch := range u.instancer.Feed().Contents() {
			if ch.Key == "/services/plainsvc/a" {
				return ch.Instance.Weight == 5
			}
		}
		return false
	})
	for range 20 {
		u.mustCall(t)
	}
	want := []string{bs[0].addr(), bs[1].addr()}
	slices.Sort(want)
	if got := u.instancer.State().Instances; !slices.Equal(got, want) {
		t.Fatalf("sd.Event instances %v, want the plain values %v", got, want)
	}
	got := u.factory.given()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("the factory was given %q, want each host:port once: %q", got, want)
	}
	if !u.reaches(t, bs[0], 4) || !u.reaches(t, bs[1], 4) {
		t.Fatal("requests do not reach both instances after set-weight")
	}
}

func TestReadmeUsageReachesJSONInstancesThroughAddressFactory(t *testing.T) {
	srv := etcdtest.NewServer(t)
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	bs := startBackends(t, "j1", "j2")
	values := map[string]string{}
	for _, b := range bs {
		values[b.name] = fmt.Sprintf(`{"id":%q,"version":"v1","address":%q,"metadata":{"zone":"a"}}`, b.name, b.addr())
	}
	u := readmeUsage(t, srv.Endpoints(), "/services/jsonsvc/", values, instance.AddressFactory)
	for _, b := range bs {
		itest.Eventually(t, 5*time.Second, "traffic to "+b.name, func() bool { return u.reaches(t, b, 3) })
	}
	etcdsd(t, "set-weight", "jsonsvc", "j1", "7", ep).ok(t)
	etcdsd(t, "drain", "jsonsvc", "j2", ep).ok(t)
	itest.Eventually(t, time.Second, "no request to the drained j2", func() bool { return u.avoids(t, bs[1], 4) })
	got, want := u.factory.given(), []string{bs[0].addr(), bs[1].addr()}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the wrapped factory was given %q, want the addresses %q", got, want)
	}
	if got := u.instancer.State().Instances; len(got) != 1 || got[0] != values["j1"] {
		t.Fatalf("sd.Event instances %q, want j1's value as registered %q", got, values["j1"])
	}
}

func TestEndpointerOnEtcdv3InstancerWeighsByTheCLIsOverride(t *testing.T) {
	srv := etcdtest.NewServer(t)
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	bs := startBackends(t, "a", "b")
	u := readmeUsage(t, srv.Endpoints(), "/services/weighted/", map[string]string{"a": bs[0].addr(), "b": bs[1].addr()}, nil)
	f := newHTTPFactory(t)
	e, err := endpointer.New(u.instancer, f.factory, itest.Logger(t), endpointer.WithStrategy(endpointer.Weighted), endpointer.WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	weightOf := func(addr string) int {
		for _, in := range e.Instances() {
			if in.Address == addr {
				return in.EffectiveWeight()
			}
		}
		return -1
	}
	itest.Eventually(t, 5*time.Second, "both instances with weight 1", func() bool { return weightOf(bs[0].addr()) == 1 && weightOf(bs[1].addr()) == 1 })

	etcdsd(t, "set-weight", "weighted", "a", "9", ep).ok(t)
	itest.Eventually(t, time.Second, "a with the typed weight 9", func() bool { return weightOf(bs[0].addr()) == 9 })
	before := bs[0].hits.Load()
	call := e.Endpoint()
	const n = 200
	for range n {
		if _, err := call(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	share := float64(bs[0].hits.Load()-before) / n
	t.Logf("a served %.0f%% of %d requests at weight 9 against 1", 100*share, n)
	if share < 0.8 {
		t.Fatalf("a served %.0f%% of the requests, want about 90%%", 100*share)
	}
	if got := f.given(); slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "{") }) || len(got) != 2 {
		t.Fatalf("the endpointer's factory was given %q, want the two host:port once each", got)
	}

	etcdsd(t, "set-weight", "--clear", "weighted", "a", ep).ok(t)
	itest.Eventually(t, time.Second, "a back to weight 1", func() bool { return weightOf(bs[0].addr()) == 1 })
}

// go-kit programs register prefix + address, and an address may be a URL:
// /services/urlsvc/http://127.0.0.1:port. The CLI drains such an instance
// by the id the catalog lists (everything after the service name), and
// both go-kit's sd.NewEndpointer and etcdsd's endpointer on
// etcdv3.NewInstancer stop sending it requests.
func TestCLIDrainsAnInstanceWhoseKeyEndsInAURL(t *testing.T) {
	srv := etcdtest.NewServer(t)
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	bs := startBackends(t, "u1", "u2")
	urls := map[string]string{}
	for _, b := range bs {
		urls["http://"+b.addr()] = "http://" + b.addr()
	}
	// The factory of a program whose instances are URLs.
	fromURL := func(f sd.Factory) sd.Factory {
		return func(instance string) (endpoint.Endpoint, io.Closer, error) {
			return f(strings.TrimPrefix(instance, "http://"))
		}
	}
	u := readmeUsage(t, srv.Endpoints(), "/services/urlsvc/", urls, fromURL)
	e, err := endpointer.New(u.instancer, fromURL(newHTTPFactory(t).factory), itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	ours := e.Endpoint()
	// oursAvoid reports whether n calls through etcdsd's endpointer, which
	// must all succeed, all miss b.
	oursAvoid := func(b *backend, n int) bool {
		before := b.hits.Load()
		for range n {
			if _, err := ours(context.Background(), nil); err != nil {
				t.Fatalf("call through the endpointer: %v", err)
			}
		}
		return b.hits.Load() == before
	}
	for _, b := range bs {
		itest.Eventually(t, 5*time.Second, "traffic to "+b.name, func() bool { return u.reaches(t, b, 3) && !oursAvoid(b, 3) })
	}
	drained, id := bs[1], "http://"+bs[1].addr()

	if out := etcdsd(t, "list", "urlsvc", ep).ok(t).stdout; !strings.Contains(out, id) {
		t.Fatalf("list does not show the id %q:\n%s", id, out)
	}
	etcdsd(t, "drain", "urlsvc", id, ep).ok(t)
	itest.Eventually(t, time.Second, "no request to the drained u2 within 1 s of the drain", func() bool {
		return u.avoids(t, drained, 6) && oursAvoid(drained, 6)
	})
	if got := u.instancer.State().Instances; len(got) != 1 || got[0] != "http://"+bs[0].addr() {
		t.Fatalf("sd.Event instances %v, want u1's only", got)
	}

	etcdsd(t, "undrain", "urlsvc", id, ep).ok(t)
	itest.Eventually(t, time.Second, "requests to u2 within 1 s of the undrain", func() bool {
		return u.reaches(t, drained, 3) && !oursAvoid(drained, 3)
	})
}
