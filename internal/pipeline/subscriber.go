package pipeline

import (
	"sync"

	"github.com/go-kit/kit/sd"
)

// subscriber delivers a Feed's go-kit state to one channel from its own
// goroutine. It fetches the state when it is about to send, so a reader
// that falls behind costs the Feed nothing and later reads the newest
// state, and changes that come faster than it reads are built into one
// list.
type subscriber struct {
	ch  chan<- sd.Event
	get func() (sd.Event, uint64) // the current state and its number

	wake  chan struct{} // capacity 1: "the state may have changed"
	quit  chan struct{}
	done  chan struct{}
	first chan struct{} // closed once the initial state is delivered (or on stop)
	once  sync.Once

	mu      sync.Mutex
	resends []chan struct{} // each closed once the current state is sent again after it was asked
}

func newSubscriber(ch chan<- sd.Event, get func() (sd.Event, uint64)) *subscriber {
	s := &subscriber{
		ch:    ch,
		get:   get,
		wake:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
		done:  make(chan struct{}),
		first: make(chan struct{}),
	}
	go s.run()
	return s
}

// wakeUp tells the goroutine to fetch the state again; it never blocks.
func (s *subscriber) wakeUp() {
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

// resend has the goroutine send the current state again, even one it has
// sent already, as a go-kit Register does; the wait it returns ends once
// it is sent (or on stop).
func (s *subscriber) resend() (wait func()) {
	sent := make(chan struct{})
	s.mu.Lock()
	s.resends = append(s.resends, sent)
	s.mu.Unlock()
	s.wakeUp()
	return func() {
		select {
		case <-sent:
		case <-s.done:
		}
	}
}

// takeResends returns the resends asked since the last call.
func (s *subscriber) takeResends() []chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.resends
	s.resends = nil
	return r
}

func (s *subscriber) stop() {
	s.once.Do(func() { close(s.quit) })
	<-s.done
}

// run delivers states until stop: the current one at once, then each new
// one, never the same state twice in a row unless a resend asks for it.
// While a send is blocked it keeps fetching newer states, so the reader
// gets the latest.
func (s *subscriber) run() {
	defer close(s.done)
	var lastSeq uint64
	delivered := false
	var resends []chan struct{} // asked, to be told once a state is sent
	for {
		resends = append(resends, s.takeResends()...)
		ev, seq := s.get()
		if delivered && seq == lastSeq && len(resends) == 0 {
			select {
			case <-s.wake:
				continue
			case <-s.quit:
				return
			}
		}
		// Take a newer state first: once the reader is ready, select would
		// pick between it and the older one at random. Nothing between
		// this check and the select below may call a function, so that the
		// goroutine cannot be descheduled in between and come back to a
		// stale choice.
		select {
		case <-s.wake:
			continue
		default:
		}
		select {
		case s.ch <- ev:
			lastSeq = seq
			if !delivered {
				delivered = true
				close(s.first)
			}
			for _, sent := range resends {
				close(sent)
			}
			resends = nil
		case <-s.wake:
		case <-s.quit:
			return
		}
	}
}
