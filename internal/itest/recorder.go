package itest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
)

// Recorder keeps every event a subscriber received.
type Recorder struct {
	ch   chan sd.Event
	quit chan struct{}
	done chan struct{}

	mu      sync.Mutex
	events  []sd.Event
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
				r.events = append(r.events, ev)
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

// Last returns the last event (zero before the first) and a channel closed
// at the next one.
func (r *Recorder) Last() (sd.Event, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return sd.Event{}, r.changed
	}
	return r.events[len(r.events)-1], r.changed
}

// Since returns the events received from index i on, and the next index.
func (r *Recorder) Since(i int) ([]sd.Event, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sd.Event(nil), r.events[i:]...), len(r.events)
}

// WaitFor waits until the last event satisfies cond and returns it.
func (r *Recorder) WaitFor(t testing.TB, within time.Duration, what string, cond func(sd.Event) bool) sd.Event {
	t.Helper()
	timeout := time.After(within)
	for {
		ev, changed := r.Last()
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
