package instance

import (
	"sync"

	"github.com/go-kit/kit/sd"
)

// subscriber delivers events to one channel from its own goroutine, keeping
// only the latest undelivered event, so that a reader that falls behind
// costs the publisher nothing and later reads the newest state.
type subscriber struct {
	ch chan<- sd.Event

	mu      sync.Mutex
	pending sd.Event
	has     bool

	wake  chan struct{} // capacity 1: "pending changed"
	quit  chan struct{}
	done  chan struct{}
	first chan struct{} // closed once the initial state is delivered (or on stop)
	once  sync.Once
}

func newSubscriber(ch chan<- sd.Event, initial sd.Event) *subscriber {
	s := &subscriber{
		ch:    ch,
		wake:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
		first: make(chan struct{}),
	}
	go s.run(initial)
	return s
}

// offer replaces the pending event; it never blocks.
func (s *subscriber) offer(ev sd.Event) {
	s.mu.Lock()
	s.pending, s.has = ev, true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) waitFirst() {
	select {
	case <-s.first:
	case <-s.done:
	}
}

func (s *subscriber) stop() {
	s.once.Do(func() { close(s.quit) })
	<-s.done
}

// run delivers events until stop. While a send is blocked it keeps taking
// newer events, so the reader gets the latest state, never a stale one, and
// never the same state twice in a row.
func (s *subscriber) run(initial sd.Event) {
	defer close(s.done)
	ev, last, delivered := initial, sd.Event{}, false
	for {
		select {
		case s.ch <- ev:
			last = ev
			if !delivered {
				delivered = true
				close(s.first)
			}
		case <-s.wake:
			next, ok := s.take()
			if !ok {
				continue
			}
			ev = next
			if !delivered || !sameEvent(ev, last) {
				continue
			}
		case <-s.quit:
			return
		}
		if !s.waitNewer(&ev, last) {
			return
		}
	}
}

// waitNewer blocks until an event differing from last is pending and stores
// it in ev; it returns false when the subscriber is stopped.
func (s *subscriber) waitNewer(ev *sd.Event, last sd.Event) bool {
	for {
		select {
		case <-s.wake:
			if next, ok := s.take(); ok && !sameEvent(next, last) {
				*ev = next
				return true
			}
		case <-s.quit:
			return false
		}
	}
}

func (s *subscriber) take() (sd.Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev, ok := s.pending, s.has
	s.has = false
	return ev, ok
}
