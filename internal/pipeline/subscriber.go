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

func (s *subscriber) stop() {
	s.once.Do(func() { close(s.quit) })
	<-s.done
}

// run delivers states until stop: the current one at once, then each new
// one, never the same state twice in a row. While a send is blocked it
// keeps fetching newer states, so the reader gets the latest.
func (s *subscriber) run() {
	defer close(s.done)
	var lastSeq uint64
	delivered := false
	for {
		ev, seq := s.get()
		if delivered && seq == lastSeq {
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
		case <-s.wake:
		case <-s.quit:
			return
		}
	}
}
