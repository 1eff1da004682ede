package etcdtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

const (
	// readyTimeout bounds how long a start waits for etcd to serve clients.
	readyTimeout = 30 * time.Second
	// bindAttempts is how often a start is tried when a port is taken.
	bindAttempts = 3
)

// member is one embedded etcd member. Its name, ports and data dir outlive
// stop, so start brings back the same member with the same data.
type member struct {
	name    string
	dir     string
	client  url.URL
	peer    url.URL
	cluster string // initial cluster: "name=peerURL,..."
	token   string // initial cluster token
	opts    options
	log     *zap.Logger

	mu       sync.Mutex
	etcd     *embed.Etcd // nil while stopped
	endpoint string      // client endpoint as Endpoints reports it
}

// config builds a fresh embed.Config for every start: StartEtcd keeps state
// in the Config it is given, so one Config cannot be started twice.
func (m *member) config() *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = m.name
	cfg.Dir = m.dir
	cfg.ListenClientUrls = []url.URL{m.client}
	cfg.AdvertiseClientUrls = []url.URL{m.client}
	cfg.ListenPeerUrls = []url.URL{m.peer}
	cfg.AdvertisePeerUrls = []url.URL{m.peer}
	cfg.InitialCluster = m.cluster
	cfg.InitialClusterToken = m.token
	// A heartbeat of 10 ms elects a leader in tens of milliseconds instead
	// of a second; loopback has no latency that would need the defaults.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	// Test data is thrown away, so fsync only costs time.
	cfg.UnsafeNoFsync = true
	// Test passwords guard nothing; the default cost takes seconds per
	// login under the race detector.
	cfg.BcryptCost = 4
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(m.log)
	for _, fn := range m.opts.configure {
		fn(cfg)
	}
	if !cfg.ClientTLSInfo.Empty() || cfg.ClientAutoTLS {
		for _, urls := range [][]url.URL{cfg.ListenClientUrls, cfg.AdvertiseClientUrls} {
			for i := range urls {
				urls[i].Scheme = "https"
			}
		}
	}
	return cfg
}

// launch starts the member without waiting for it to serve, trying up to
// attempts times while a port is taken. A first start passes 1 and picks
// new ports instead; a restart must keep its ports and waits a little.
func (m *member) launch(attempts int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd != nil {
		return nil
	}
	var err error
	for attempt := range attempts {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
		}
		cfg := m.config()
		var e *embed.Etcd
		e, err = embed.StartEtcd(cfg)
		if err == nil {
			m.etcd = e
			m.endpoint = endpointOf(cfg.AdvertiseClientUrls[0])
			return nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return fmt.Errorf("etcdtest: start member %s (client %s, peer %s): %w", m.name, m.client.Host, m.peer.Host, err)
}

// waitReady waits until the member serves clients, fails or deadline passes.
func (m *member) waitReady(deadline time.Time) error {
	m.mu.Lock()
	e := m.etcd
	m.mu.Unlock()
	if e == nil {
		return fmt.Errorf("etcdtest: wait for member %s: not started", m.name)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("etcdtest: wait for member %s: %w", m.name, err)
	case <-timer.C:
		return fmt.Errorf("etcdtest: wait for member %s (client %s): not ready after %v", m.name, m.client.Host, readyTimeout)
	}
}

// halt stops raft at once, like a crash that keeps the data: a leader does
// not hand over leadership, and the others elect a new one. etcd's graceful
// stop would instead wait up to 5 s for a handover to a peer that may be
// stopping too.
func (m *member) halt() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd != nil {
		m.etcd.Server.HardStop()
	}
}

// stop halts the member and closes it, which releases its ports. Close
// waits up to the request timeout (about 5 s) for clients' open watch and
// lease keepalive streams, and up to 1 s for peer connections of members
// that keep running.
func (m *member) stop() {
	m.halt()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd == nil {
		return
	}
	m.etcd.Close()
	m.etcd = nil
}

// failures returns the channel on which a running member reports that it
// failed while serving.
func (m *member) failures() <-chan error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.etcd.Err()
}

func (m *member) running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.etcd != nil
}

// clientEndpoint is the endpoint of the last start, which stays valid while
// the member is stopped because a restart reuses the port.
func (m *member) clientEndpoint() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.endpoint
}

// leadership returns the member IDs of this member and of the leader it
// knows (0 for none); ok is false while the member is stopped.
func (m *member) leadership() (self, lead uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd == nil {
		return 0, 0, false
	}
	s := m.etcd.Server
	return uint64(s.MemberID()), uint64(s.Leader()), true
}

// endpointOf returns u as clientv3 takes it: host:port for plain text, and
// the full URL for TLS so the scheme tells the reader to configure TLS.
func endpointOf(u url.URL) string {
	if u.Scheme == "https" {
		return "https://" + u.Host
	}
	return u.Host
}

// freePorts finds n distinct free loopback ports. It holds all listeners
// open together so that no port is handed out twice; another process may
// still take one before etcd binds it, which the callers retry.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("etcdtest: find free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func loopbackURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
}
