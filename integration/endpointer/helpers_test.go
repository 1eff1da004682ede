// Package endpointer tests package endpointer end to end: real HTTP
// services built with go-kit's transport/http, registered in an embedded
// etcd through Registrars, found through an Instancer, and called through
// an Endpointer.
package endpointer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"
	httptransport "github.com/go-kit/kit/transport/http"
	"go.uber.org/goleak"

	"github.com/etcdsd/etcdsd/endpointer"
	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/itest"
)

func TestMain(m *testing.M) {
	runInstanceIfChild()
	goleak.VerifyTestMain(m)
}

// ttl keeps keys of a dead registrar from lingering: 2 s, heartbeat 500 ms.
var ttl = etcdv3.NewTTLOption(500*time.Millisecond, 2*time.Second)

// env is one test's etcd, client and prefix.
type env struct {
	t         *testing.T
	endpoints []string // etcd's
	client    *etcdv3.EtcdClient
	prefix    string
}

// newEnv starts an embedded etcd and a client closed before it stops
// (cleanups run last-registered first).
func newEnv(t *testing.T) *env {
	t.Helper()
	srv := etcdtest.NewServer(t)
	c, err := etcdv3.NewEtcdClient(context.Background(), srv.Endpoints(), etcdv3.ClientOptions{
		DialTimeout: 2 * time.Second, RequestTimeout: 2 * time.Second, Logger: itest.Logger(t),
	})
	if err != nil {
		t.Fatalf("new etcd client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return &env{t: t, endpoints: srv.Endpoints(), client: c, prefix: "/services/" + strings.ReplaceAll(t.Name(), "/", "-") + "/"}
}

// reply is what every service answers.
type reply struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// service is one HTTP service: a go-kit transport/http server on a
// loopback port, registered in etcd with a JSON value.
type service struct {
	name, version string
	addr          string
	served        atomic.Int64
	srv           *http.Server
	serveDone     chan struct{}
	reg           *etcdv3.Registrar
	stopOnce      sync.Once
}

// startService serves and registers a service, and stops it at cleanup.
func (e *env) startService(name, version string) *service {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatalf("listen: %v", err)
	}
	s := &service{name: name, version: version, addr: ln.Addr().String(), serveDone: make(chan struct{})}
	ep := func(context.Context, any) (any, error) {
		s.served.Add(1)
		return reply{Name: name, Version: version}, nil
	}
	handler := httptransport.NewServer(ep,
		func(context.Context, *http.Request) (any, error) { return nil, nil },
		httptransport.EncodeJSONResponse,
	)
	s.srv = &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(s.serveDone)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			e.t.Errorf("serve %s: %v", name, err)
		}
	}()
	value, err := instance.Instance{ID: name, Name: "greeter", Version: version, Address: s.addr}.Encode()
	if err != nil {
		e.t.Fatal(err)
	}
	s.reg = etcdv3.NewRegistrar(e.client, etcdv3.Service{Key: e.prefix + name, Value: value, TTL: ttl}, itest.Logger(e.t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.reg.RegisterContext(ctx); err != nil {
		e.t.Fatalf("register %s: %v", name, err)
	}
	e.t.Cleanup(s.stop)
	return s
}

// crash closes the HTTP server and every connection to it, as a dying
// process would, but leaves its key in etcd.
func (s *service) crash() {
	s.srv.Close()
	<-s.serveDone
}

// stop crashes the service and deregisters it.
func (s *service) stop() {
	s.stopOnce.Do(func() {
		s.crash()
		s.reg.Deregister()
	})
}

// client is an Endpointer on the env's prefix with counters of what went
// through it.
type client struct {
	*endpointer.Endpointer
	mu        sync.Mutex
	failures  map[string]int         // address → failed calls
	failTimes map[string][]time.Time // address → when each failed call returned
	closed    map[string]int         // address → endpoint closes
}

// newClient builds an Instancer and an Endpointer whose factory makes go-kit
// transport/http clients, each with its own transport closed when the
// endpoint is.
func (e *env) newClient(opts ...endpointer.Option) *client {
	e.t.Helper()
	in, err := etcdv3.NewInstancer(e.client, e.prefix, itest.Logger(e.t))
	if err != nil {
		e.t.Fatalf("new instancer: %v", err)
	}
	e.t.Cleanup(in.Stop)
	c := &client{failures: map[string]int{}, failTimes: map[string][]time.Time{}, closed: map[string]int{}}
	factory := func(address string) (endpoint.Endpoint, io.Closer, error) {
		u, err := url.Parse("http://" + address + "/")
		if err != nil {
			return nil, nil, err
		}
		tr := &http.Transport{}
		ep := httptransport.NewClient(http.MethodPost, u,
			httptransport.EncodeJSONRequest,
			func(_ context.Context, r *http.Response) (any, error) {
				if r.StatusCode != http.StatusOK {
					return nil, fmt.Errorf("status %d", r.StatusCode)
				}
				var rep reply
				return rep, json.NewDecoder(r.Body).Decode(&rep)
			},
			httptransport.SetClient(&http.Client{Transport: tr, Timeout: 2 * time.Second}),
		).Endpoint()
		counted := func(ctx context.Context, req any) (any, error) {
			resp, err := ep(ctx, req)
			if err != nil {
				now := time.Now()
				c.mu.Lock()
				c.failures[address]++
				c.failTimes[address] = append(c.failTimes[address], now)
				c.mu.Unlock()
			}
			return resp, err
		}
		return counted, closerFunc(func() error {
			tr.CloseIdleConnections()
			c.mu.Lock()
			c.closed[address]++
			c.mu.Unlock()
			return nil
		}), nil
	}
	opts = append([]endpointer.Option{endpointer.WithRetry(4, 5*time.Second), endpointer.WithBackoff(2*time.Millisecond, 20*time.Millisecond)}, opts...)
	ep, err := endpointer.New(in, factory, itest.Logger(e.t), opts...)
	if err != nil {
		e.t.Fatalf("new endpointer: %v", err)
	}
	e.t.Cleanup(ep.Close)
	c.Endpointer = ep
	return c
}

func (c *client) failuresAt(addr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failures[addr]
}

// failuresSince returns the failed calls to addr that returned at or
// after t0, and when the last one did.
func (c *client) failuresSince(addr string, t0 time.Time) (n int, last time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, at := range c.failTimes[addr] {
		if !at.Before(t0) {
			n++
			last = at
		}
	}
	return n, last
}

func (c *client) closesOf(addr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed[addr]
}

// has reports whether the client routes to addr now.
func (c *client) has(addr string) bool {
	for _, in := range c.Instances() {
		if in.Address == addr {
			return true
		}
	}
	return false
}

// call makes one request and returns who answered.
func (c *client) call(t *testing.T, ctx context.Context) reply {
	t.Helper()
	resp, err := c.Endpoint()(ctx, struct{}{})
	if err != nil {
		t.Fatalf("request failed: %v", err)
	}
	return resp.(reply)
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }
