package etcdtest

import (
	"fmt"
	"time"

	"github.com/etcdsd/etcdsd/internal/embedetcd"
)

const (
	// readyTimeout bounds how long a start waits for etcd to serve clients.
	readyTimeout = 30 * time.Second
	// bindAttempts is how often a start is tried when a port is taken.
	bindAttempts = 3
)

// launch starts m without waiting; see embedetcd.Member.Launch.
func launch(m *embedetcd.Member, attempts int) error {
	if err := m.Launch(attempts); err != nil {
		return fmt.Errorf("etcdtest: %w", err)
	}
	return nil
}

// waitReady waits until m serves clients; see embedetcd.Member.WaitReady.
func waitReady(m *embedetcd.Member, deadline time.Time) error {
	if err := m.WaitReady(deadline); err != nil {
		return fmt.Errorf("etcdtest: %w", err)
	}
	return nil
}

// freePorts finds n free loopback ports; see embedetcd.FreePorts.
func freePorts(n int) ([]int, error) {
	ports, err := embedetcd.FreePorts(n)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: %w", err)
	}
	return ports, nil
}
