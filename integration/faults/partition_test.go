package faults

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// partitioned is one etcd with a client cut off behind proxies and a client
// that is not, and a fleet registered on the cut-off one, watched from both.
type partitioned struct {
	srv            *etcdtest.Server
	px             proxies
	cutOff, direct *etcdv3.EtcdClient
	f              *fleet
	far, near      *watcher // on the cut-off client; on the direct one
}

func newPartitioned(t *testing.T, prefix string, n int) *partitioned {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("partitions need an embedded etcd behind a proxy")
	}
	logs := newLogTail(t)
	p := &partitioned{srv: srv, px: newProxies(t, srv.Endpoints())}
	p.cutOff = newClient(t, logs, p.px.Endpoints())
	p.direct = newClient(t, logs, srv.Endpoints())
	p.f = newFleet(t, prefix, srv.Client(t), logs)
	p.far = p.f.watch("cut-off", p.cutOff)
	p.near = p.f.watch("direct", p.direct)
	for i := range n {
		p.f.register(p.cutOff, fmt.Sprint(i))
	}
	p.f.mustCheck("before the partition")
	return p
}

func TestPartitionLongerThanTTLRegistersAgain(t *testing.T) {
	p := newPartitioned(t, "/faults/partition-long/", 5)
	lease := p.f.live[p.f.keys()[0]].reg.Status().LeaseID

	p.px.cut()
	// The cut-off subscriber hears of the outage once and keeps its instances.
	p.far.rec.WaitFor(t, 5*time.Second, "an error event with the last instances", func(ev sd.Event) bool {
		return ev.Err != nil && len(ev.Instances) == 5
	})
	// etcd lets the lease expire; the direct subscriber sees the keys go.
	p.near.rec.WaitFor(t, ttl+5*time.Second, "the expired instances gone", func(ev sd.Event) bool {
		return ev.Err == nil && len(ev.Instances) == 0
	})
	for _, k := range p.f.keys() {
		if st := p.f.live[k].reg.Status(); st.Err == nil {
			t.Fatalf("registrar of %s reports no error while cut off: %+v", k, st)
		}
	}

	p.px.heal()
	p.f.mustCheck("after healing")
	if now := p.f.live[p.f.keys()[0]].reg.Status().LeaseID; now == lease {
		t.Fatalf("still on lease %x, which etcd expired", lease)
	}
}

func TestPartitionShorterThanTTLDoesNotFlap(t *testing.T) {
	p := newPartitioned(t, "/faults/partition-short/", 5)
	want := slices.Clone(p.near.rec.WaitFor(t, time.Second, "the registered instances", func(ev sd.Event) bool { return len(ev.Instances) == 5 }).Instances)
	lease := p.f.live[p.f.keys()[0]].reg.Status().LeaseID
	_, nearFrom := p.near.rec.Since(0)
	_, farFrom := p.far.rec.Since(0)

	// Cut off for half the TTL: the cut-off watcher notices (the dial
	// timeout is 400 ms), the lease does not expire.
	p.px.cut()
	p.far.rec.WaitFor(t, 5*time.Second, "an error event with the last instances", func(ev sd.Event) bool {
		return ev.Err != nil && slices.Equal(ev.Instances, want)
	})
	time.Sleep(ttl/2 - dialTimeout) // the rest of the outage
	p.px.heal()
	p.f.mustCheck("after healing")

	// No subscriber ever saw an instance go, and no lease was replaced.
	for _, w := range []struct {
		*watcher
		from int
	}{{p.near, nearFrom}, {p.far, farFrom}} {
		evs, _ := w.rec.Since(w.from)
		for _, ev := range evs {
			if !slices.Equal(ev.Instances, want) {
				t.Fatalf("watcher %s flapped: got %v (err %v), want %v throughout", w.name, ev.Instances, ev.Err, want)
			}
		}
	}
	for _, k := range p.f.keys() {
		if now := p.f.live[k].reg.Status().LeaseID; now != lease {
			t.Fatalf("registrar of %s moved from lease %x to %x, but the lease never expired", k, lease, now)
		}
	}
}

func TestCompactionWhileWatcherPartitionedResyncs(t *testing.T) {
	p := newPartitioned(t, "/faults/compaction/", 0)
	// Here the registrars stay reachable and only the watcher is cut off.
	for i := range 6 {
		p.f.register(p.direct, fmt.Sprint(i))
	}
	p.f.mustCheck("before the partition")

	p.px.cut()
	p.far.rec.WaitFor(t, 5*time.Second, "an error event while cut off", func(ev sd.Event) bool { return ev.Err != nil })
	before := p.far.in.Revision()
	keys := p.f.keys()
	p.f.deregister(keys[0])
	p.f.deregister(keys[1])
	p.f.change(keys[2])
	for i := range 4 {
		p.f.register(p.direct, fmt.Sprintf("new-%d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := p.f.truth.Get(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.f.truth.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatalf("compact at %d: %v", resp.Header.Revision, err)
	}
	if now := p.far.in.Revision(); now != before {
		t.Fatalf("the cut-off watcher moved from revision %d to %d", before, now)
	}

	p.px.heal()
	p.f.mustCheck("after healing past a compaction")
	if p.far.in.Revision() < resp.Header.Revision {
		t.Fatalf("watcher at revision %d, behind the compaction at %d", p.far.in.Revision(), resp.Header.Revision)
	}
	// It goes on following changes after the resync.
	p.f.register(p.direct, "after")
	p.f.mustCheck("a change after the resync")
}

func TestPartitionHealedWithoutResetRecoversWithinDialTimeout(t *testing.T) {
	p := newPartitioned(t, "/faults/partition-quiet-heal/", 3)
	p.px.cut()
	p.far.rec.WaitFor(t, 5*time.Second, "an error event while cut off", func(ev sd.Event) bool { return ev.Err != nil })
	// A real partition heals quietly: no connection is reset, and the
	// attempt to connect that hung while packets were dropped is left to
	// time out on its own.
	for _, px := range p.px {
		px.Unblackhole()
	}
	if d := p.f.mustCheck("after a quiet heal"); d > 5*time.Second {
		t.Fatalf("took %v to recover after a quiet heal; want the reconnect bounded by the dial timeout (%v) and a short backoff", d, dialTimeout)
	}
}

// TestNewInstancerContextOfAFollowedPrefixFailsDuringAnOutageAsFastAsAnUnfollowedOne:
// while etcd is unreachable, NewInstancerContext of a prefix nobody
// follows fails within the dial timeout (its read is bounded by it: "While
// etcd is unreachable no call blocks past RequestTimeout", design.md). On
// a prefix that another Instancer of the client follows, the shared watch
// waits to resume and reads nothing: the new Instancer reads the prefix
// itself, and fails as fast, with an error naming the operation.
func TestNewInstancerContextOfAFollowedPrefixFailsDuringAnOutageAsFastAsAnUnfollowedOne(t *testing.T) {
	srv := etcdtest.NewServer(t)
	sw := newProbeSwitch(t, srv.Endpoints()[0])
	c := itestclient.New(t, []string{sw.addr()}, func(o *etcdv3.ClientOptions) {
		o.DialTimeout = dialTimeout
		o.RequestTimeout = requestTimeout
	})
	const prefix = "/services/outage-ctx-followed/"
	first, err := etcdv3.NewInstancer(c, prefix, itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(first.Stop)
	sub := itest.Subscribe(t, first)
	sw.set("")
	sub.WaitFor(t, 10*time.Second, "the outage reported", func(ev sd.Event) bool { return ev.Err != nil })

	// The same call on a prefix nobody follows, for comparison.
	start := time.Now()
	if in, err := etcdv3.NewInstancerContext(context.Background(), c, "/services/outage-ctx-alone/", itest.Logger(t)); err == nil {
		in.Stop()
		t.Fatal("NewInstancerContext of an unshared prefix succeeded during the outage")
	}
	t.Logf("unshared prefix: failed after %v", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	start = time.Now()
	in, err := etcdv3.NewInstancerContext(ctx, c, prefix, itest.Logger(t))
	took := time.Since(start)
	if err == nil {
		in.Stop()
	}
	t.Logf("shared prefix: err=%v after %v", err, took.Round(time.Millisecond))
	if err == nil || !strings.HasPrefix(err.Error(), "etcdv3: new instancer: ") || !errors.Is(err, etcdv3.ErrUnreachable) {
		t.Errorf("NewInstancerContext on a shared prefix during the outage: err %v, want an etcdv3.ErrUnreachable naming the operation", err)
	}
	if bound := dialTimeout + requestTimeout + time.Second; took > bound {
		t.Errorf("NewInstancerContext on a shared prefix took %v during the outage, want at most %v (the unshared one fails within the dial timeout)", took.Round(time.Millisecond), bound)
	}
}
