package main

import (
	"fmt"
	"os"
	"time"

	"github.com/etcdsd/etcdsd/internal/embedetcd"
)

// readyTimeout bounds how long Start waits for etcd to serve clients.
const readyTimeout = 30 * time.Second

// embeddedEtcd is a single etcd member inside this process, for the demo:
// no install, no setup. It keeps its data dir and port across Stop and
// Start, as a real restart does.
type embeddedEtcd struct {
	m *embedetcd.Member
}

// startEmbeddedEtcd starts a member on free loopback ports with data in a
// new temporary directory.
func startEmbeddedEtcd() (*embeddedEtcd, error) {
	dir, err := os.MkdirTemp("", "etcdsd-demo-")
	if err != nil {
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	ports, err := embedetcd.FreePorts(2)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("embedded etcd: %w", err)
	}
	e := &embeddedEtcd{m: &embedetcd.Member{
		Name:   "demo",
		Dir:    dir,
		Client: embedetcd.LoopbackURL(ports[0]),
		Peer:   embedetcd.LoopbackURL(ports[1]),
	}}
	if err := e.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return e, nil
}

// Endpoint is the client endpoint, host:port.
func (e *embeddedEtcd) Endpoint() string {
	return embedetcd.EndpointOf(e.m.Client)
}

// Start starts the member and waits until it serves clients; if it does
// not, Start stops it again.
func (e *embeddedEtcd) Start() error {
	if err := e.m.Launch(1); err != nil {
		return fmt.Errorf("embedded etcd: %w", err)
	}
	if err := e.m.WaitReady(time.Now().Add(readyTimeout)); err != nil {
		e.m.Stop()
		return fmt.Errorf("embedded etcd: %w", err)
	}
	return nil
}

// Stop stops the member at once, as a crash would, keeping its data.
func (e *embeddedEtcd) Stop() {
	e.m.Stop()
}

// Close stops the member and removes its data.
func (e *embeddedEtcd) Close() error {
	e.Stop()
	return os.RemoveAll(e.m.Dir)
}
