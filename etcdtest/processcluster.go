package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/internal/embedetcd"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// A ProcessCluster is a multi-member etcd whose members each run in a child
// process, as StartProcess runs one: each member's CPU, memory and /metrics
// are its own, and a member can be killed with SIGKILL. Call its methods
// from the goroutine of the test it was created for.
type ProcessCluster struct {
	tb      testing.TB
	members []*Process
}

// StartProcessCluster starts a cluster of size members (3 is typical), each
// in a child process on free loopback ports with data in its own
// tb.TempDir, waits until every member serves clients, and kills them when
// the test ends. Like StartProcess it needs RunServerIfChild first in the
// package's TestMain, and ETCD_ENDPOINTS does not affect it.
func StartProcessCluster(tb testing.TB, size int) *ProcessCluster {
	tb.Helper()
	if size < 1 {
		tb.Fatalf("etcdtest: start process cluster of %d members: need at least 1", size)
	}
	c := &ProcessCluster{tb: tb}
	for attempt := 1; ; attempt++ {
		err := c.start(size)
		if err == nil {
			break
		}
		for _, p := range c.members {
			p.Kill()
		}
		if !errors.Is(err, errAddrInUse) || attempt == bindAttempts {
			tb.Fatal(err)
		}
	}
	for _, p := range c.members {
		tb.Cleanup(p.Kill)
	}
	return c
}

// start spawns all members at once, so that they find each other, and
// waits until each serves clients.
func (c *ProcessCluster) start(size int) error {
	ports, err := freePorts(2 * size)
	if err != nil {
		return err
	}
	token := uniqueToken()
	c.members = make([]*Process, size)
	peers := make([]string, size)
	for i := range c.members {
		client, peer := embedetcd.LoopbackURL(ports[2*i]), embedetcd.LoopbackURL(ports[2*i+1])
		name := fmt.Sprintf("m%d", i)
		c.members[i] = &Process{
			tb:       c.tb,
			log:      newTestLog(c.tb),
			endpoint: embedetcd.EndpointOf(client),
			cfg:      childConfig{Name: name, Dir: c.tb.TempDir(), Client: client.String(), Peer: peer.String(), Token: token},
		}
		peers[i] = name + "=" + peer.String()
	}
	ready := make([]<-chan struct{}, size)
	for i, p := range c.members {
		p.cfg.Cluster = strings.Join(peers, ",")
		if ready[i], err = p.spawn(); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(readyTimeout)
	for i, p := range c.members {
		if err := p.await(ready[i], deadline); err != nil {
			return err
		}
	}
	return nil
}

// Endpoints returns the client endpoints of all members, running or not, in
// member order, each "127.0.0.1:PORT".
func (c *ProcessCluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, p := range c.members {
		eps[i] = p.endpoint
	}
	return eps
}

// Client returns a new client of all members, closed when tb's test ends.
func (c *ProcessCluster) Client(tb testing.TB) *clientv3.Client {
	tb.Helper()
	return newClient(tb, c.Endpoints())
}

// Member returns member i (0 ≤ i < size), to reach its endpoint, or to
// kill, stop or restart it; a restarted member rejoins with its data.
func (c *ProcessCluster) Member(i int) *Process {
	c.tb.Helper()
	if i < 0 || i >= len(c.members) {
		c.tb.Fatalf("etcdtest: member %d of a %d-member process cluster: out of range", i, len(c.members))
	}
	return c.members[i]
}

// Leader waits until every running member names the same leader, which is
// itself running, and returns its index. It fails the test if that does not
// happen within timeout.
func (c *ProcessCluster) Leader(timeout time.Duration) int {
	c.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		i, err := c.agreedLeader()
		if err == nil {
			return i
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("etcdtest: wait for a leader among %d member processes: %v after %v", len(c.members), err, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// agreedLeader asks every running member for its status and returns the
// index of the leader they all name.
func (c *ProcessCluster) agreedLeader() (int, error) {
	leader, lead := -1, uint64(0)
	for i, p := range c.members {
		if p.cmd == nil {
			continue
		}
		st, err := memberStatus(p.endpoint)
		if err != nil {
			return -1, err
		}
		if st.Leader == 0 || (lead != 0 && st.Leader != lead) {
			return -1, fmt.Errorf("member %s names leader %x, others %x", p.endpoint, st.Leader, lead)
		}
		lead = st.Leader
		if st.Header.MemberId == st.Leader {
			leader = i
		}
	}
	if leader < 0 {
		return -1, fmt.Errorf("no running member is leader %x", lead)
	}
	return leader, nil
}

// memberStatus returns the status of the member at endpoint, through a
// client of its own so that the answer comes from that member.
func memberStatus(endpoint string) (*clientv3.StatusResponse, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", endpoint, err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := cli.Status(ctx, endpoint)
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", endpoint, err)
	}
	return st, nil
}
