package itest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
)

// Recorder keeps the last event a subscriber received.
type Recorder struct {
	ch   chan sd.Event
	quit chan struct{}
	done chan struct{}

	mu      sync.Mutex
	last    sd.Event
	changed chan struct{} // closed and replaced on every event
}

// Subscribe registers a Recorder with in and deregisters it at cleanup.
func Subscribe(t testing.TB, in sd.Instancer) *Recorder {
	r := &Recorder{ch: make(chan sd.Event), quit: make(chan struct{}), done: make(chan struct{}), changed: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			select {
			case ev := <-r.ch:
				r.mu.Lock()
				r.last = ev
				close(r.changed)
				r.changed = make(chan struct{})
				r.mu.Unlock()
			case <-r.quit:
				return
			}
		}
	}()
	in.Register(r.ch)
	t.Cleanup(func() {
		in.Deregister(r.ch)
		close(r.quit)
		<-r.done
	})
	return r
}

// WaitFor waits until the recorder's last event satisfies cond and
// returns it.
func (r *Recorder) WaitFor(t testing.TB, within time.Duration, what string, cond func(sd.Event) bool) sd.Event {
	t.Helper()
	timeout := time.After(within)
	for {
		r.mu.Lock()
		ev, changed := r.last, r.changed
		r.mu.Unlock()
		if cond(ev) {
			return ev
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("not within %v: %s; last event %+v", within, what, ev)
		}
	}
}

// WaitInstances waits until the last event is error-free with exactly
// want.
func (r *Recorder) WaitInstances(t testing.TB, within time.Duration, want ...string) {
	t.Helper()
	slices.Sort(want)
	r.WaitFor(t, within, fmt.Sprintf("instances %v", want), func(ev sd.Event) bool {
		return ev.Err == nil && slices.Equal(ev.Instances, want)
	})
}
