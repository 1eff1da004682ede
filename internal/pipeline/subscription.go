package pipeline

import "sync"

// Subscription receives a Feed's changes, coalesced by key while its owner
// is busy, so that a consumer applies each batch incrementally and never
// holds up the Feed or other consumers. The first batch is a Reset with the
// whole content. Read it from one goroutine:
//
//	for {
//		select {
//		case <-sub.Ready():
//			apply(sub.Take())
//		case <-quit:
//			sub.Close()
//			return
//		}
//	}
type Subscription struct {
	feed  *Feed
	ready chan struct{} // capacity 1: "something is pending"

	mu      sync.Mutex
	pending Batch
	index   map[string]int // key → position in pending.Changes
	dirty   bool
}

func newSubscription(f *Feed, initial Batch) *Subscription {
	s := &Subscription{feed: f, ready: make(chan struct{}, 1)}
	s.offer(initial)
	return s
}

// Ready is signalled when a batch is pending.
func (s *Subscription) Ready() <-chan struct{} { return s.ready }

// Take returns what is pending, coalesced into one batch, and clears it.
// It returns an empty batch (no changes, Rev 0) when nothing is pending.
func (s *Subscription) Take() Batch {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.pending
	s.pending, s.index, s.dirty = Batch{}, nil, false
	return b
}

// Close ends the subscription: the Feed forgets it. It is idempotent.
func (s *Subscription) Close() { s.feed.unsubscribe(s) }

// offer merges b into the pending batch; it never blocks.
func (s *Subscription) offer(b Batch) {
	s.mu.Lock()
	p := &s.pending
	if !s.dirty || b.Reset {
		// Nothing pending, or b replaces everything: start from b.
		at := b.At
		if s.dirty && p.At.Before(at) {
			at = p.At // b replaces what is pending, which waited longer
		}
		*p = Batch{Rev: b.Rev, Reset: b.Reset, Resync: b.Resync, Err: b.Err, At: at, Changes: make([]Change, 0, len(b.Changes))}
		s.index = nil
	} else {
		p.Rev, p.Err = b.Rev, b.Err
		p.Resync = p.Resync || b.Resync
		if p.At.IsZero() {
			p.At = b.At
		}
	}
	// b itself is merged change by change: one watch response that catches
	// up over many revisions may change a key more than once, and the
	// consumer gets one change per key, the last.
	// The index is built only once two changes could meet: a single
	// change into an empty batch, the common case, needs none.
	if s.index == nil && len(p.Changes)+len(b.Changes) > 1 {
		s.index = make(map[string]int, len(p.Changes)+len(b.Changes))
		for i, ch := range p.Changes {
			s.index[ch.Key] = i
		}
	}
	for _, ch := range b.Changes {
		s.merge(ch)
	}
	s.dirty = true
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// merge folds ch into the pending batch, which holds at most one change
// per key.
func (s *Subscription) merge(ch Change) {
	p := &s.pending
	if p.Reset {
		// A reset is the whole content, all puts: what the key had before
		// means nothing to a consumer that starts over.
		ch.Prev = ""
	}
	i, ok := s.index[ch.Key]
	switch {
	case !ok && p.Reset && ch.Op == Delete:
		// Not in the reset: nothing to take out.
	case !ok:
		if s.index != nil {
			s.index[ch.Key] = len(p.Changes)
		}
		p.Changes = append(p.Changes, ch)
	case ch.Op == Delete && (p.Reset || p.Changes[i].Op == Put && p.Changes[i].Prev == ""):
		// The consumer never saw the key (a reset lists what exists; a
		// pending put with no Prev was its arrival): nothing is left to
		// tell.
		last := len(p.Changes) - 1
		p.Changes[i] = p.Changes[last]
		s.index[p.Changes[i].Key] = i
		p.Changes = p.Changes[:last]
		delete(s.index, ch.Key)
	default:
		// The consumer last saw the pending change's Prev.
		if !p.Reset {
			ch.Prev = p.Changes[i].Prev
		}
		p.Changes[i] = ch
	}
}
