package pipeline

import "sync"

// handout is one batch of a shared Mirror for one follower: what the
// forwarding does to the follower's Feed.
type handout struct {
	err   error // Fail with it, unless the Feed fails with it already
	reset bool  // Reset to kvs
	first bool  // the Reset is the Feed's first content
	rev   int64
	kvs   []KV
	// changes are Applied when neither err nor reset is set. They are
	// the root's batch itself: a Feed reads its batches and keeps none.
	changes []Change
	// handed, when set, is closed once the handouts before it are done:
	// Follow waits on it for the Feed to be filled.
	handed chan struct{}
}

// to does h to feed, on the goroutine of feed's producer.
func (h handout) to(feed *Feed) {
	switch {
	case h.handed != nil:
		close(h.handed)
	case h.err != nil:
		// An error the Feed has is not told again: the Mirror reports one
		// per outage, and a follower that joined during it has it already.
		if !feed.failingWith(h.err) {
			feed.Fail(h.err)
		}
	case h.reset:
		feed.Reset(h.rev, h.kvs, h.first)
	default:
		feed.Apply(h.rev, h.changes)
	}
}

// queue hands a follower's batches to its Feed, in order, from a
// goroutine of its own, so that the Feed's observer (a catalog.Watch
// whose reader is far behind, a Pool's callback) holds back only this
// follower: the Mirror and the other followers go on, and the observer
// runs on no lock of the shared entry, so it may itself start a consumer
// of the same Mirror.
//
// The queue is not bounded. A follower whose observer is stuck gets its
// batches late but every one of them: an observer must see each change
// (catalog.Watch never drops or coalesces an event), so nothing may be
// folded, and a bound could only stop the Mirror, which is what the queue
// is for not doing. It is what etcd's client did for each stuck watch
// before the Mirror was shared: it buffers every response its reader has
// not taken, without bound.
type queue struct {
	feed *Feed

	mu      sync.Mutex
	pending []handout
	wake    chan struct{} // capacity 1: "something is pending"
	quit    chan struct{}
	done    chan struct{}
}

// newQueue starts the goroutine that feeds feed; stop ends it.
func newQueue(feed *Feed) *queue {
	q := &queue{feed: feed, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go q.run()
	return q
}

// push queues h after what is pending; it never blocks.
func (q *queue) push(h handout) {
	q.mu.Lock()
	q.pending = append(q.pending, h)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// wait returns once what was pushed before handed is done, or the queue
// stopped.
func (q *queue) wait(handed chan struct{}) {
	select {
	case <-handed:
	case <-q.done:
	}
}

// run hands the pending batches to the Feed, in order, until stop. What
// is pending at stop is dropped: the Feed's owner stops the Feed.
func (q *queue) run() {
	defer close(q.done)
	for {
		select {
		case <-q.wake:
		case <-q.quit:
			return
		}
		q.mu.Lock()
		batch := q.pending
		q.pending = nil
		q.mu.Unlock()
		for i, h := range batch {
			select {
			case <-q.quit:
				return
			default:
			}
			h.to(q.feed)
			batch[i] = handout{} // what is handed over is the Feed's now
		}
	}
}

// stop ends the goroutine and waits for it: for the observer call it is
// in, if any. It must not be called from the observer.
func (q *queue) stop() {
	close(q.quit)
	<-q.done
}
