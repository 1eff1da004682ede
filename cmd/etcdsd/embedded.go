package main

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// embeddedEtcd is a single etcd member inside this process, for the demo:
// no install, no setup. It keeps its data dir and port across Stop and
// Start, as a real restart does.
type embeddedEtcd struct {
	dir        string
	clientPort int
	peerPort   int
	etcd       *embed.Etcd
}

// startEmbeddedEtcd starts a member on free loopback ports with data in a
// new temporary directory.
func startEmbeddedEtcd() (*embeddedEtcd, error) {
	dir, err := os.MkdirTemp("", "etcdsd-demo-")
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	ports, err := freeLoopbackPorts(2)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	e := &embeddedEtcd{dir: dir, clientPort: ports[0], peerPort: ports[1]}
	if err := e.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return e, nil
}

// Endpoint is the client endpoint, host:port.
func (e *embeddedEtcd) Endpoint() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(e.clientPort))
}

// Start starts the member and waits until it serves clients.
func (e *embeddedEtcd) Start() error {
	client := url.URL{Scheme: "http", Host: e.Endpoint()}
	peer := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(e.peerPort))}
	cfg := embed.NewConfig()
	cfg.Name = "demo"
	cfg.Dir = e.dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = "demo=" + peer.String()
	// Elect in tens of milliseconds: loopback needs no slower timing.
	cfg.TickMs, cfg.ElectionMs = 10, 100
	cfg.Logger, cfg.LogLevel = "zap", "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	etcd, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("embedded etcd: start on %s: %w", e.Endpoint(), err)
	}
	select {
	case <-etcd.Server.ReadyNotify():
		e.etcd = etcd
		return nil
	case err := <-etcd.Err():
		etcd.Close()
		return fmt.Errorf("embedded etcd: start on %s: %w", e.Endpoint(), err)
	case <-time.After(30 * time.Second):
		etcd.Close()
		return fmt.Errorf("embedded etcd: not ready on %s after 30s", e.Endpoint())
	}
}

// Stop stops the member at once, as a crash would, keeping its data.
func (e *embeddedEtcd) Stop() {
	if e.etcd == nil {
		return
	}
	e.etcd.Server.HardStop()
	e.etcd.Close()
	e.etcd = nil
}

// Close stops the member and removes its data.
func (e *embeddedEtcd) Close() error {
	e.Stop()
	return os.RemoveAll(e.dir)
}

func freeLoopbackPorts(n int) ([]int, error) {
	var ports []int
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("embedded etcd: find a free port: %w", err)
		}
		closers = append(closers, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
