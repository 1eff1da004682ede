package etcdv3

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// registrarClientOf returns the context API a Registrar registers through:
// the real client's own, or, for any other Client, a goKitClient. Only the
// real client itself has it: a user's type that wraps or embeds it goes
// through its own Register and Deregister, as with go-kit's Registrar.
func registrarClientOf(c Client) registrarClient {
	if ec, ok := c.(*EtcdClient); ok {
		return ec
	}
	return &goKitClient{c: c, timeout: DefaultRequestTimeout}
}

// goKitClient gives a go-kit style Client, one with only go-kit's five
// methods (a user's fake, a client written for go-kit), the context API a
// Registrar registers through.
//
// go-kit's Register and Deregister take no context and may block: each
// runs aside, in a goroutine of its own, while the caller waits for it
// within its context. The calls run one at a time, in the order they were
// made, so that a delete is never overtaken by a put asked for before it:
//   - a Register starts only once the call before it has returned, waiting
//     for it within its context, so that at most one Register runs;
//   - a Deregister is queued behind the call before it and runs once that
//     one returns, even if its caller has given up, so that a key
//     deregistered never comes back; the Deregisters made while one waits
//     share it;
//   - a Register whose caller gave up before it returned, and that
//     succeeded, is undone by a Deregister before the next call starts: its
//     caller was told that it failed.
//
// A go-kit call cannot be stopped: its goroutine ends when it returns, and
// until then the calls after it fail within their contexts.
type goKitClient struct {
	c Client
	// timeout bounds the calls made for the Registrar's methods that take
	// no context; a go-kit Client has no RequestTimeout of its own.
	timeout time.Duration

	mu   sync.Mutex
	last *goKitCall // the call made last; nil before the first
}

// goKitCall is one go-kit call run aside. Its fields but done and err are
// guarded by goKitClient.mu.
type goKitCall struct {
	deregister bool
	started    bool // the call before it has returned; it runs
	returned   bool // the go-kit call has returned
	abandoned  bool // its caller gave up before it returned
	done       chan struct{}
	err        error // set before done is closed
}

func (c *goKitCall) ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// RegisterContext puts s with go-kit's Register, once the call before has
// returned, and waits for it within ctx. go-kit's error is returned as it
// is.
func (a *goKitClient) RegisterContext(ctx context.Context, s Service) error {
	a.mu.Lock()
	for a.last != nil && !a.last.ended() {
		prev := a.last.done
		a.mu.Unlock()
		select {
		case <-prev:
		case <-ctx.Done():
			return fmt.Errorf("etcdv3: register %q: the client's call before it has not returned: %w", s.Key, context.Cause(ctx))
		}
		a.mu.Lock()
	}
	call := &goKitCall{started: true, done: make(chan struct{})}
	a.last = call
	a.mu.Unlock()

	go func() {
		defer close(call.done)
		err := a.c.Register(s)
		a.mu.Lock()
		call.returned = true
		undo := call.abandoned && err == nil
		a.mu.Unlock()
		if undo {
			// Best effort: a failed undo has no caller left to hear of it.
			a.c.Deregister(s)
		}
		call.err = err
	}()

	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
	}
	a.mu.Lock()
	returned := call.returned
	call.abandoned = !returned
	a.mu.Unlock()
	if returned {
		<-call.done // at once: nothing to undo
		return call.err
	}
	return fmt.Errorf("etcdv3: register %q: the client's Register has not returned (it is undone if it succeeds): %w", s.Key, context.Cause(ctx))
}

// deregister deletes s.Key with go-kit's Deregister, queued behind the call
// before it, and waits for it within ctx. A go-kit Client does not say
// which keys it keeps: keptOnly is ignored, and the key is deleted whatever
// holds it, as go-kit's Deregister does. go-kit's error is returned as it
// is.
func (a *goKitClient) deregister(ctx context.Context, s Service, _ bool) error {
	a.mu.Lock()
	call := a.last
	if call == nil || !call.deregister || call.started {
		prev := call
		call = &goKitCall{deregister: true, done: make(chan struct{})}
		a.last = call
		go func() {
			defer close(call.done)
			if prev != nil {
				<-prev.done
			}
			a.mu.Lock()
			call.started = true
			a.mu.Unlock()
			call.err = a.c.Deregister(s)
		}()
	}
	a.mu.Unlock()

	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return fmt.Errorf("etcdv3: deregister %q: the client's call has not returned (the delete is made once it does): %w", s.Key, context.Cause(ctx))
	}
}

// registration reports go-kit's LeaseID for every key: a go-kit Client
// keeps no lease per key, and says nothing of its health.
func (a *goKitClient) registration(string) (leaseID int64, kept, healthy bool, err error) {
	return a.c.LeaseID(), true, true, nil
}

func (a *goKitClient) LeaseID() int64 { return a.c.LeaseID() }

func (a *goKitClient) requestTimeout() time.Duration { return a.timeout }

// metrics: a go-kit Client has no ClientOptions.Metrics.
func (a *goKitClient) metrics() *Metrics { return nil }
