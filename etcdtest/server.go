package etcdtest

import (
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/internal/embedetcd"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// EnvEndpoints names the environment variable that points the tests at an
// external etcd instead: a comma-separated list such as
// "10.0.0.1:2379,10.0.0.2:2379". When it is set, NewServer starts nothing
// and NewCluster skips the test.
const EnvEndpoints = "ETCD_ENDPOINTS"

// An Option changes how NewServer and NewCluster configure etcd.
type Option func(*options)

type options struct {
	configure []func(*embed.Config)
}

// WithConfig calls fn on each member's embed.Config before every start,
// after etcdtest has set the name, data dir, URLs, timing and logging, so fn
// may change any of them. It runs again on every restart and must give the
// same result each time. When fn sets ClientTLSInfo or ClientAutoTLS, the
// client URLs switch to https.
func WithConfig(fn func(*embed.Config)) Option {
	return func(o *options) { o.configure = append(o.configure, fn) }
}

func newOptions(opts []Option) options {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// A Server is a single etcd member embedded in the test process, or an
// external etcd named by ETCD_ENDPOINTS. Its methods that start or stop etcd
// fail or skip the test it was created for, so call them from that test's
// goroutine.
type Server struct {
	tb       testing.TB
	external []string // set instead of m when ETCD_ENDPOINTS is
	m        *embedetcd.Member
}

// NewServer starts a single-member etcd on free loopback ports with data in
// tb.TempDir, waits until it serves clients, and stops it when the test
// ends. It fails the test if etcd is not ready within 30 seconds. When
// ETCD_ENDPOINTS is set it starts no etcd and ignores opts: it returns a
// Server for a loopback namespace proxy to that etcd, which gives the test
// a keyspace of its own and deletes the test's keys when it ends.
func NewServer(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	if eps := externalEndpoints(); eps != nil {
		// Each test gets a keyspace of its own in the shared etcd.
		return &Server{tb: tb, external: []string{startNamespaceProxy(tb, eps).endpoint}}
	}
	m := &embedetcd.Member{Name: "etcdtest", Token: uniqueToken(), Configure: newOptions(opts).configure, Log: newTestLog(tb).zapLogger()}
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			tb.Fatal(err)
		}
		// A fresh dir per attempt: a failed start must not leave state
		// that the next one mistakes for an existing member.
		m.Dir = tb.TempDir()
		m.Client, m.Peer = embedetcd.LoopbackURL(ports[0]), embedetcd.LoopbackURL(ports[1])
		err = launch(m, 1)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == bindAttempts {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(m.Stop)
	if err := waitReady(m, time.Now().Add(readyTimeout)); err != nil {
		tb.Fatal(err)
	}
	return &Server{tb: tb, m: m}
}

// Endpoints returns the client endpoints as clientv3.Config.Endpoints takes
// them: "127.0.0.1:PORT" for an embedded server ("https://127.0.0.1:PORT"
// when WithConfig turned on client TLS), or, with ETCD_ENDPOINTS, the
// endpoint of the test's namespace proxy.
// They stay the same across Stop and Start.
func (s *Server) Endpoints() []string {
	if s.external != nil {
		return append([]string(nil), s.external...)
	}
	return []string{s.m.ClientEndpoint()}
}

// Client returns a new client of this server, closed when tb's test ends.
// It dials without TLS and credentials; for a server that needs them, build
// a clientv3.Config from Endpoints.
func (s *Server) Client(tb testing.TB) *clientv3.Client {
	tb.Helper()
	return newClient(tb, s.Endpoints())
}

// Stop stops the embedded member and keeps its ports and data for Start. It
// does nothing if the member is stopped already. Stopping takes
// milliseconds, but up to about 5 seconds while clients hold watch or lease
// keepalive streams, because etcd waits for them to end: close clients first
// where the test allows. On an external server Stop skips the test.
func (s *Server) Stop() {
	s.tb.Helper()
	s.skipIfExternal("Stop")
	s.m.Stop()
}

// Start starts the stopped member again on the same ports with the same
// data, and waits until it serves clients; clients created before keep
// working once it does. It does nothing if the member runs. On an external
// server Start skips the test.
func (s *Server) Start() {
	s.tb.Helper()
	s.skipIfExternal("Start")
	if err := launch(s.m, bindAttempts); err != nil {
		s.tb.Fatal(err)
	}
	if err := waitReady(s.m, time.Now().Add(readyTimeout)); err != nil {
		s.tb.Fatal(err)
	}
}

// Restart stops the member and starts it again; see Stop and Start.
func (s *Server) Restart() {
	s.tb.Helper()
	s.skipIfExternal("Restart")
	s.Stop()
	s.Start()
}

// Running reports whether the member is started. An external server always
// counts as running.
func (s *Server) Running() bool {
	return s.external != nil || s.m.Running()
}

// External reports whether the server is the external etcd of
// ETCD_ENDPOINTS rather than an embedded one.
func (s *Server) External() bool {
	return s.external != nil
}

func (s *Server) skipIfExternal(op string) {
	if s.external != nil {
		s.tb.Helper()
		s.tb.Skipf("etcdtest: %s needs an embedded etcd, and %s is set", op, EnvEndpoints)
	}
}

// newClient connects to endpoints and closes the client when tb's test ends.
func newClient(tb testing.TB, endpoints []string) *clientv3.Client {
	tb.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      newTestLog(tb).zapLogger(),
	})
	if err != nil {
		tb.Fatalf("etcdtest: connect to %v: %v", endpoints, err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

// externalEndpoints returns the endpoints in ETCD_ENDPOINTS, or nil.
func externalEndpoints() []string {
	var eps []string
	for ep := range strings.SplitSeq(os.Getenv(EnvEndpoints), ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			eps = append(eps, ep)
		}
	}
	return eps
}

// uniqueToken returns an initial cluster token of its own, so that members
// of different test clusters never accept each other as peers.
func uniqueToken() string {
	return "etcdtest-" + rand.Text()
}
