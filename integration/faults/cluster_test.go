package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
)

// clustered is a 3-member cluster with two clients of all members, one
// registering and one watching, and a fleet watched from both.
type clustered struct {
	c        *etcdtest.Cluster
	svc, obs *etcdv3.EtcdClient
	f        *fleet
	watchers []*watcher
}

func newClustered(t *testing.T, prefix string, n int) *clustered {
	c := etcdtest.NewCluster(t, 3)
	logs := newLogTail(t)
	cl := &clustered{c: c}
	cl.svc = newClient(t, logs, c.Endpoints())
	cl.obs = newClient(t, logs, c.Endpoints())
	cl.f = newFleet(t, prefix, c.Client(t), logs)
	cl.watchers = []*watcher{cl.f.watch("registering client", cl.svc), cl.f.watch("watching client", cl.obs)}
	for i := range n {
		cl.f.register(cl.svc, fmt.Sprint(i))
	}
	cl.f.mustCheck("before the fault")
	return cl
}

// churn registers, deregisters and changes a few instances.
func (cl *clustered) churn(tag string) {
	keys := cl.f.keys()
	cl.f.register(cl.svc, tag+"-a")
	cl.f.register(cl.svc, tag+"-b")
	cl.f.deregister(keys[0])
	cl.f.change(keys[1])
}

func TestLeaderKilledWhileRegistrarsAndInstancersRun(t *testing.T) {
	cl := newClustered(t, "/faults/leader/", 5)
	old := cl.c.Leader()
	cl.c.StopMember(old)
	if now := cl.c.Leader(); now == old {
		t.Fatalf("member %d still leads after it stopped", old)
	}
	cl.churn("leaderless")
	cl.f.mustCheck("with a new leader")

	cl.c.StartMember(old)
	cl.churn("rejoined")
	cl.f.mustCheck("with the old leader back")
}

func TestMinorityMemberKilledGoesUnnoticed(t *testing.T) {
	cl := newClustered(t, "/faults/minority/", 5)
	from := make([]int, len(cl.watchers))
	for i, w := range cl.watchers {
		_, from[i] = w.rec.Since(0)
	}
	follower := (cl.c.Leader() + 1) % 3
	cl.c.StopMember(follower)
	cl.churn("minority-down")
	cl.f.mustCheck("with a follower down")
	cl.c.StartMember(follower)
	cl.churn("minority-back")
	cl.f.mustCheck("with the follower back")

	// A quorum was there throughout: no subscriber was told of an outage.
	for i, w := range cl.watchers {
		evs, _ := w.rec.Since(from[i])
		for _, ev := range evs {
			if ev.Err != nil {
				t.Fatalf("watcher %s got an error while a quorum served: %v", w.name, ev.Err)
			}
		}
	}
}

func TestWholeClusterStoppedLongerThanTTL(t *testing.T) {
	cl := newClustered(t, "/faults/whole-cluster/", 5)
	cl.c.Stop()
	down := time.Now()
	for _, w := range cl.watchers {
		w.rec.WaitFor(t, 5*time.Second, "an error event with the last instances", func(ev sd.Event) bool {
			return ev.Err != nil && len(ev.Instances) == 5
		})
	}
	// Registering during the outage is retried until etcd is back.
	cl.f.register(cl.svc, "during-outage")
	time.Sleep(ttl + heartbeat - time.Since(down)) // outlive the TTL
	cl.c.Start()
	cl.f.mustCheck("after the cluster restarted")
}
