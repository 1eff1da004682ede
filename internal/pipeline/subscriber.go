package pipeline

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
	seq     uint64 // the cache's number for pending
	has     bool

	wake  chan struct{} // capacity 1: "pending changed"
	quit  chan struct{}
	done  chan struct{}
	first chan struct{} // closed once the initial state is delivered (or on stop)
	once  sync.Once
}

func newSubscriber(ch chan<- sd.Event, initial sd.Event, seq uint64) *subscriber {
	s := &subscriber{
		ch:    ch,
		wake:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
		first: make(chan struct{}),
	}
	go s.run(initial, seq)
	return s
}

// offer replaces the pending event; it never blocks.
func (s *subscriber) offer(ev sd.Event, seq uint64) {
	s.mu.Lock()
	s.pending, s.seq, s.has = ev, seq, true
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
// newer events, so the reader gets the latest state and never the same
// state twice in a row. States are told apart by the cache's sequence
// number; contents are compared only when a newer state replaced one never
// delivered, the one case where the state may have come back to what the
// reader already has.
func (s *subscriber) run(ev sd.Event, seq uint64) {
	defer close(s.done)
	var last sd.Event
	lastSeq, delivered := uint64(0), false
	// coalesced: ev replaced a newer-than-last state that was never
	// delivered, so it may equal last again.
	coalesced := false
	takeNewer := func() {
		if next, nextSeq, ok := s.take(); ok && nextSeq != seq {
			coalesced = coalesced || (delivered && seq != lastSeq)
			ev, seq = next, nextSeq
		}
	}
	for {
		if delivered && (seq == lastSeq || coalesced && sameEvent(ev, last)) {
			if !s.waitNewer(&ev, &seq, lastSeq) {
				return
			}
			coalesced = false
			continue
		}
		// Take a newer state first: once the reader is ready, select would
		// pick between it and the older one at random. Nothing between
		// this check and the select below may call a function, so that the
		// goroutine cannot be descheduled in between and come back to a
		// stale choice.
		select {
		case <-s.wake:
			takeNewer()
			continue
		default:
		}
		select {
		case s.ch <- ev:
			last, lastSeq, coalesced = ev, seq, false
			if !delivered {
				delivered = true
				close(s.first)
			}
		case <-s.wake:
			takeNewer()
		case <-s.quit:
			return
		}
	}
}

// waitNewer blocks until a state newer than lastSeq is pending and stores it
// in ev and seq; it returns false when the subscriber is stopped.
func (s *subscriber) waitNewer(ev *sd.Event, seq *uint64, lastSeq uint64) bool {
	for {
		select {
		case <-s.wake:
			if next, nextSeq, ok := s.take(); ok && nextSeq != lastSeq {
				*ev, *seq = next, nextSeq
				return true
			}
		case <-s.quit:
			return false
		}
	}
}

func (s *subscriber) take() (sd.Event, uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev, seq, ok := s.pending, s.seq, s.has
	s.has = false
	return ev, seq, ok
}
