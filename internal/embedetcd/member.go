package embedetcd

import (
	"errors"
	"fmt"
	"net/url"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// A Member is one embedded etcd member. Its name, ports and data dir
// outlive Stop, so Launch brings back the same member with the same data.
// Set the fields before the first Launch and change them only while the
// member is stopped.
type Member struct {
	Name   string
	Dir    string // data dir
	Client url.URL
	Peer   url.URL
	// Cluster is the initial cluster, "name=peerURL,..."; empty means this
	// member alone.
	Cluster string
	// Token is the initial cluster token; empty keeps etcd's default.
	Token string
	// Log receives etcd's errors; nil discards them.
	Log *zap.Logger
	// Configure runs on the embed.Config before every start, after the
	// fields above and the timing and logging are set, so it may change any
	// of them. It must give the same result each time. When it sets
	// ClientTLSInfo or ClientAutoTLS, the client URLs switch to https.
	Configure []func(*embed.Config)

	mu       sync.Mutex
	etcd     *embed.Etcd // nil while stopped
	endpoint string      // client endpoint as EndpointOf gives it
	launched time.Time   // when the last Launch started etcd
}

// config builds a fresh embed.Config for every start: StartEtcd keeps state
// in the Config it is given, so one Config cannot be started twice.
func (m *Member) config() *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = m.Dir
	cfg.ListenClientUrls = []url.URL{m.Client}
	cfg.AdvertiseClientUrls = []url.URL{m.Client}
	cfg.ListenPeerUrls = []url.URL{m.Peer}
	cfg.AdvertisePeerUrls = []url.URL{m.Peer}
	cfg.InitialCluster = m.Cluster
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = m.Name + "=" + m.Peer.String()
	}
	if m.Token != "" {
		cfg.InitialClusterToken = m.Token
	}
	// A heartbeat of 10 ms elects a leader in tens of milliseconds instead
	// of a second; loopback has no latency that would need the defaults.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	// Test and demo data is thrown away, so fsync only costs time.
	cfg.UnsafeNoFsync = true
	// Test passwords guard nothing; the default cost takes seconds per
	// login under the race detector.
	cfg.BcryptCost = 4
	log := m.Log
	if log == nil {
		log = zap.NewNop()
	}
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(log)
	for _, fn := range m.Configure {
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

// Launch starts the member without waiting for it to serve, trying up to
// attempts times while a port is taken; the error then wraps
// syscall.EADDRINUSE. A first start passes 1 and picks new ports instead; a
// restart must keep its ports and waits a little. Launch does nothing if
// the member runs.
func (m *Member) Launch(attempts int) error {
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
		launched := time.Now()
		var e *embed.Etcd
		e, err = embed.StartEtcd(cfg)
		if err == nil {
			m.etcd = e
			m.endpoint = EndpointOf(cfg.AdvertiseClientUrls[0])
			m.launched = launched
			return nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return fmt.Errorf("start member %s (client %s, peer %s): %w", m.Name, m.Client.Host, m.Peer.Host, err)
}

// WaitReady waits until the member serves clients, fails or deadline
// passes. It leaves a member that fails running; Stop it.
func (m *Member) WaitReady(deadline time.Time) error {
	m.mu.Lock()
	e, launched := m.etcd, m.launched
	m.mu.Unlock()
	if e == nil {
		return fmt.Errorf("wait for member %s: not started", m.Name)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("wait for member %s: %w", m.Name, err)
	case <-timer.C:
		return fmt.Errorf("wait for member %s (client %s): not ready after %v", m.Name, m.Client.Host, time.Since(launched).Round(time.Millisecond))
	}
}

// Halt stops raft at once, like a crash that keeps the data: a leader does
// not hand over leadership, and the others elect a new one. etcd's graceful
// stop would instead wait up to 5 s for a handover to a peer that may be
// stopping too. The member keeps its ports until Stop.
func (m *Member) Halt() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd != nil {
		m.etcd.Server.HardStop()
	}
}

// Stop halts the member and closes it, which releases its ports and keeps
// its data. Close waits up to the request timeout (about 5 s) for clients'
// open watch and lease keepalive streams, and up to 1 s for peer
// connections of members that keep running. Stop does nothing if the
// member is stopped already.
func (m *Member) Stop() {
	m.Halt()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd == nil {
		return
	}
	m.etcd.Close()
	m.etcd = nil
}

// Failures returns the channel on which a running member reports that it
// failed while serving.
func (m *Member) Failures() <-chan error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.etcd.Err()
}

// Running reports whether the member is launched and not stopped.
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.etcd != nil
}

// ClientEndpoint is the client endpoint of the last Launch, which stays
// valid while the member is stopped because a restart reuses the port.
func (m *Member) ClientEndpoint() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.endpoint
}

// Leadership returns the member IDs of this member and of the leader it
// knows (0 for none); ok is false while the member is stopped.
func (m *Member) Leadership() (self, lead uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.etcd == nil {
		return 0, 0, false
	}
	s := m.etcd.Server
	return uint64(s.MemberID()), uint64(s.Leader()), true
}
