package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
)

// churner registers, deregisters and changes instances of a fleet in a
// goroutine until stopped, keeping between min and max instances.
type churner struct {
	f        *fleet
	c        *etcdv3.EtcdClient
	tag      string // names the churner's keys apart from others'
	min, max int

	ops    atomic.Int64
	mu     sync.Mutex // held by each operation; hold it to quiesce
	cancel context.CancelFunc
	done   chan struct{}
}

func startChurn(f *fleet, c *etcdv3.EtcdClient, tag string, min, max int, every time.Duration) *churner {
	ctx, cancel := context.WithCancel(context.Background())
	ch := &churner{f: f, c: c, tag: tag, min: min, max: max, cancel: cancel, done: make(chan struct{})}
	go ch.run(ctx, every)
	return ch
}

func (ch *churner) run(ctx context.Context, every time.Duration) {
	defer close(ch.done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		ch.mu.Lock()
		ch.step(n)
		ch.mu.Unlock()
		ch.ops.Add(1)
	}
}

// step makes one change to the churner's own keys: a registration, a
// deregistration or a new value.
func (ch *churner) step(n int) {
	keys := ch.f.keysWith(ch.f.prefix + ch.tag + "-")
	switch r := rand.IntN(3); {
	case len(keys) < ch.min || (r == 0 && len(keys) < ch.max):
		ch.f.register(ch.c, fmt.Sprintf("%s-%d", ch.tag, n))
	case r == 1 && len(keys) > ch.min:
		ch.f.deregister(keys[rand.IntN(len(keys))])
	default:
		ch.f.change(keys[rand.IntN(len(keys))])
	}
}

// quiesce holds the churn until the returned function is called.
func (ch *churner) quiesce() func() {
	ch.mu.Lock()
	return ch.mu.Unlock
}

// stop ends the churn and waits for it; it returns the operations made.
func (ch *churner) stop() int64 {
	ch.cancel()
	<-ch.done
	return ch.ops.Load()
}

func TestProcessKilledMidChurnAndRestarted(t *testing.T) {
	p := etcdtest.StartProcess(t)
	logs := newLogTail(t)
	svc := newClient(t, logs, p.Endpoints())
	obs := newClient(t, logs, p.Endpoints())
	f := newFleet(t, "/faults/kill9/", p.Client(t), logs)
	watchers := []*watcher{f.watch("registering client", svc), f.watch("watching client", obs)}
	for i := range 5 {
		f.register(svc, fmt.Sprint(i))
	}
	f.mustCheck("before the kill")

	ch := startChurn(f, svc, "churn", 3, 10, 20*time.Millisecond)
	t.Cleanup(func() { ch.stop() })
	for ch.ops.Load() < 20 {
		time.Sleep(10 * time.Millisecond)
	}
	p.Kill() // SIGKILL, mid-churn
	for _, w := range watchers {
		w.rec.WaitFor(t, 5*time.Second, "an error event after kill -9", func(ev sd.Event) bool { return ev.Err != nil })
	}
	at := ch.ops.Load()
	for ch.ops.Load() < at+3 { // churn goes on during the outage
		time.Sleep(10 * time.Millisecond)
	}
	p.Restart()
	at = ch.ops.Load()
	for ch.ops.Load() < at+20 {
		time.Sleep(10 * time.Millisecond)
	}
	ops := ch.stop()
	f.mustCheck(fmt.Sprintf("after kill -9 and restart (%d operations)", ops))
}
