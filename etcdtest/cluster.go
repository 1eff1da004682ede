package etcdtest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/internal/embedetcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A Cluster is a multi-member etcd embedded in the test process. Its
// methods that start or stop members fail the test it was created for, so
// call them from that test's goroutine.
type Cluster struct {
	tb      testing.TB
	members []*Server
}

// NewCluster starts a cluster of size members (3 is typical) on free
// loopback ports, each with data in its own tb.TempDir, waits until every
// member serves clients and a leader is elected, and stops the members when
// the test ends. When ETCD_ENDPOINTS is set it skips the test: a cluster
// test stops and starts members, which it cannot do to an external etcd.
func NewCluster(tb testing.TB, size int, opts ...Option) *Cluster {
	tb.Helper()
	if externalEndpoints() != nil {
		tb.Skipf("etcdtest: NewCluster needs an embedded etcd, and %s is set", EnvEndpoints)
	}
	if size < 1 {
		tb.Fatalf("etcdtest: new cluster of %d members: need at least 1", size)
	}
	o := newOptions(opts)
	log := newTestLog(tb).zapLogger()
	token := uniqueToken()
	var ms []*embedetcd.Member
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(2 * size)
		if err != nil {
			tb.Fatal(err)
		}
		ms = make([]*embedetcd.Member, size)
		peers := make([]string, size)
		for i := range ms {
			ms[i] = &embedetcd.Member{
				Name:      fmt.Sprintf("m%d", i),
				Dir:       tb.TempDir(),
				Client:    embedetcd.LoopbackURL(ports[2*i]),
				Peer:      embedetcd.LoopbackURL(ports[2*i+1]),
				Token:     token,
				Log:       log,
				Configure: o.configure,
			}
			peers[i] = ms[i].Name + "=" + ms[i].Peer.String()
		}
		for _, m := range ms {
			m.Cluster = strings.Join(peers, ",")
		}
		err = launchAll(ms)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == bindAttempts {
			tb.Fatal(err)
		}
	}
	c := &Cluster{tb: tb, members: make([]*Server, size)}
	for i, m := range ms {
		c.members[i] = &Server{tb: tb, m: m}
	}
	tb.Cleanup(c.stop)
	deadline := time.Now().Add(readyTimeout)
	for _, m := range ms {
		if err := waitReady(m, deadline); err != nil {
			tb.Fatal(err)
		}
	}
	c.WaitLeader(readyTimeout)
	return c
}

// launchAll starts all members without waiting, so that they find each
// other; if one fails it stops the others.
func launchAll(ms []*embedetcd.Member) error {
	for i, m := range ms {
		if err := launch(m, 1); err != nil {
			stopMembers(ms[:i])
			return err
		}
	}
	return nil
}

// Endpoints returns the client endpoints of all members, running or not, in
// member order; see Server.Endpoints for their form.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, s := range c.members {
		eps[i] = s.m.ClientEndpoint()
	}
	return eps
}

// Client returns a new client of all members, closed when tb's test ends.
func (c *Cluster) Client(tb testing.TB) *clientv3.Client {
	tb.Helper()
	return newClient(tb, c.Endpoints())
}

// Member returns member i (0 ≤ i < size) as a Server, to reach its own
// endpoint or client, or to stop and start it.
func (c *Cluster) Member(i int) *Server {
	c.tb.Helper()
	if i < 0 || i >= len(c.members) {
		c.tb.Fatalf("etcdtest: member %d of a %d-member cluster: out of range", i, len(c.members))
	}
	return c.members[i]
}

// StopMember stops member i and keeps its ports and data; see Server.Stop.
// The member stops like a crash that loses nothing: a leader does not hand
// over leadership first, so the others elect a new one once the election
// timeout (100 ms) passes. Stopping takes up to 1 s while other members run.
func (c *Cluster) StopMember(i int) {
	c.tb.Helper()
	c.Member(i).Stop()
}

// StartMember starts the stopped member i again on its ports with its data,
// and waits until it has rejoined and serves clients, which needs a quorum
// of running members; see Server.Start.
func (c *Cluster) StartMember(i int) {
	c.tb.Helper()
	c.Member(i).Start()
}

// Stop stops every member at once, like a power loss of the whole cluster
// that keeps the data; Start brings it back. See Server.Stop for how long
// stopping takes while clients hold streams.
func (c *Cluster) Stop() {
	c.tb.Helper()
	c.stop()
}

// Start starts every stopped member at once on its ports with its data (a
// member alone cannot serve without a quorum, so StartMember one by one
// would wait forever after Stop), and waits until all serve clients and
// agree on a leader.
func (c *Cluster) Start() {
	c.tb.Helper()
	var started []*embedetcd.Member
	for _, s := range c.members {
		if s.m.Running() {
			continue
		}
		if err := launch(s.m, bindAttempts); err != nil {
			c.tb.Fatal(err)
		}
		started = append(started, s.m)
	}
	deadline := time.Now().Add(readyTimeout)
	for _, m := range started {
		if err := waitReady(m, deadline); err != nil {
			c.tb.Fatal(err)
		}
	}
	c.WaitLeader(readyTimeout)
}

// Leader returns the index of the current leader, waiting up to 10 seconds
// for an election; see WaitLeader.
func (c *Cluster) Leader() int {
	c.tb.Helper()
	return c.WaitLeader(10 * time.Second)
}

// WaitLeader waits until all running members agree on a leader that is
// itself running and knows that it leads, and returns its index. It fails
// the test if that does not happen within timeout.
func (c *Cluster) WaitLeader(timeout time.Duration) int {
	c.tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if i, ok := c.agreedLeader(); ok {
			return i
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("etcdtest: wait for a leader among %d members: none agreed on within %v", len(c.members), timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// agreedLeader returns the index of the leader if every running member
// names it and it names itself.
func (c *Cluster) agreedLeader() (int, bool) {
	leader, lead := -1, uint64(0)
	for i, s := range c.members {
		self, l, ok := s.m.Leadership()
		if !ok {
			continue
		}
		if l == 0 || (lead != 0 && l != lead) {
			return -1, false
		}
		lead = l
		if self == l {
			leader = i
		}
	}
	return leader, leader >= 0
}

// stop stops all members.
func (c *Cluster) stop() {
	ms := make([]*embedetcd.Member, len(c.members))
	for i, s := range c.members {
		ms[i] = s.m
	}
	stopMembers(ms)
}

// stopMembers stops ms. It halts them all before closing any, so that each
// member's peers have dropped their connections by the time it closes, and
// closes them concurrently, so that none waits for another.
func stopMembers(ms []*embedetcd.Member) {
	for _, m := range ms {
		m.Halt()
	}
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(m.Stop)
	}
	wg.Wait()
}
