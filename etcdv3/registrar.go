package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/etcdsd/etcdsd/internal/backoff"
)

// State is where a Registrar stands.
type State int

// Registrar states.
const (
	// StateIdle: never registered, or a RegisterContext gave up.
	StateIdle State = iota
	// StateRegistering: the first put has not succeeded yet; retrying.
	StateRegistering
	// StateRegistered: the key was put and is kept alive by the client,
	// which also puts it back after a lease loss.
	StateRegistered
	// StatePaused: left discovery on purpose (Pause); Resume comes back.
	StatePaused
	// StateDeregistered: Deregister was called.
	StateDeregistered
)

func (s State) String() string {
	switch s {
	case StateIdle:
		return "idle"
	case StateRegistering:
		return "registering"
	case StateRegistered:
		return "registered"
	case StatePaused:
		return "paused"
	case StateDeregistered:
		return "deregistered"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Status is a Registrar's state with its lease and last error. While
// registered, Err is set when the keepalive or a re-registration is failing
// (etcd unreachable, lease lost and not yet re-granted).
type Status struct {
	State   State
	LeaseID int64
	Err     error
}

// registrationReporter is implemented by EtcdClient, which knows how each
// key's lease is doing.
type registrationReporter interface {
	registration(key string) (leaseID int64, kept, healthy bool, err error)
}

// Registrar registers service instance liveness information to etcd.
//
// Register puts the key and the client keeps it alive; if etcd cannot be
// reached at first, the Registrar retries with capped exponential backoff
// until it succeeds or Deregister is called. Register twice is a no-op;
// Deregister is idempotent.
//
// It logs what go-kit's logs, with the same keys in the same order: the
// logger gets "key" and "value", then "err" for a failed Register or
// Deregister, "action" "register" (with "lease" when the service has a
// TTL option) or "action" "deregister" on success. A Register that failed
// and is retried adds a warning when the error changes (and once a minute
// while it persists) and the "action" "register" line once it succeeds.
type Registrar struct {
	client  Client
	service Service
	logger  log.Logger
	metrics *Metrics // the real client's, or nil

	// opMu serialises Register, Deregister, Pause and Resume, so that a
	// first attempt in flight cannot put a key back after Deregister.
	opMu sync.Mutex

	mu      sync.Mutex
	state   State
	lastErr error
	cancel  context.CancelFunc // stops the retry goroutine, if any
	done    chan struct{}      // closed when the retry goroutine ends
	changed chan struct{}      // closed and replaced on every state change
}

// NewRegistrar returns a etcd Registrar acting on the provided catalog
// registration (service).
func NewRegistrar(client Client, service Service, logger log.Logger) *Registrar {
	if logger == nil {
		logger = log.NewNopLogger()
	}
	r := &Registrar{
		client:  client,
		service: service,
		logger:  log.With(logger, "key", service.Key, "value", service.Value),
		changed: make(chan struct{}),
	}
	if ec, ok := client.(*EtcdClient); ok {
		r.metrics = ec.opts.Metrics
	}
	r.metrics.registrationMoved(StateIdle, StateIdle, false)
	return r
}

// Register implements the sd.Registrar interface. Call it when you want your
// service to be registered in etcd, typically at startup. It tries once
// before returning (within the client's request timeout, and its dial
// timeout while etcd is unreachable); on failure it logs the error and
// keeps retrying in the background until it succeeds or Deregister is
// called. Only an empty or malformed key or an empty value is not retried.
func (r *Registrar) Register() {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	if err := r.start(); err != nil {
		r.logger.Log("err", err)
	}
}

// RegisterContext registers, retrying with backoff until it succeeds or ctx
// ends, and returns the error then. It returns at once, with the error, for
// input that can never succeed: an empty key or value (the bare ErrNoKey or
// ErrNoValue, as in go-kit) or a malformed key.
func (r *Registrar) RegisterContext(ctx context.Context) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	return r.registerLocked(ctx)
}

func (r *Registrar) registerLocked(ctx context.Context) error {
	var p permanent
	if err := r.start(); errors.As(err, &p) {
		return p.error // bare, as go-kit returns ErrNoKey and ErrNoValue
	}
	for {
		r.mu.Lock()
		st, lastErr, changed := r.state, r.lastErr, r.changed
		r.mu.Unlock()
		switch st {
		case StateRegistered:
			return nil
		case StateRegistering:
		default:
			return fmt.Errorf("etcdv3: register %q: registrar is %v", r.service.Key, st)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			r.stopRetrying()
			if r.State() == StateRegistered {
				return nil
			}
			r.setState(StateIdle, lastErr)
			if lastErr == nil {
				lastErr = ctx.Err()
			}
			return fmt.Errorf("etcdv3: register %q: gave up: %w", r.service.Key, errors.Join(ctx.Err(), lastErr))
		}
	}
}

// start makes one attempt and, if it fails for a reason that may pass,
// leaves a goroutine retrying. It is a no-op while registering or
// registered.
func (r *Registrar) start() error {
	r.mu.Lock()
	if r.state == StateRegistering || r.state == StateRegistered {
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	if err := r.service.validate(); err != nil {
		r.setState(StateIdle, err)
		return permanent{err}
	}
	r.service.TTL.warnRepaired(r.logger)
	ctx, cancel := context.WithCancel(context.Background())
	err := r.register(ctx, false)
	if err == nil {
		cancel()
		r.registered()
		return nil
	}
	done := make(chan struct{})
	r.mu.Lock()
	r.cancel, r.done = cancel, done
	r.mu.Unlock()
	r.setState(StateRegistering, err)
	go r.retry(ctx, done, err)
	return err
}

// register makes one attempt: through the real client, bounded by ctx too
// when retrying (so that Deregister stops an attempt in flight); through
// any other Client, with go-kit's Register.
func (r *Registrar) register(ctx context.Context, retrying bool) error {
	ec, ok := r.client.(*EtcdClient)
	if !ok {
		return r.client.Register(r.service)
	}
	if !retrying {
		return ec.Register(r.service)
	}
	ctx, cancel := context.WithTimeout(ctx, ec.opts.RequestTimeout)
	defer cancel()
	return ec.RegisterContext(ctx, r.service)
}

// retryLogEvery is how often a retry that keeps failing with the same error
// is logged again.
const retryLogEvery = time.Minute

func (r *Registrar) retry(ctx context.Context, done chan struct{}, lastErr error) {
	defer close(done)
	b := backoff.New(100*time.Millisecond, r.service.ttlOrDefault().heartbeat)
	logged := time.Now()
	for b.Sleep(ctx) {
		err := r.register(ctx, true)
		if err == nil {
			r.registered()
			return
		}
		if ctx.Err() != nil {
			return
		}
		if err.Error() != lastErr.Error() || time.Since(logged) >= retryLogEvery {
			level.Warn(r.logger).Log("msg", "register failed, retrying", "err", err)
			logged = time.Now()
		}
		lastErr = err
		r.setState(StateRegistering, err)
	}
}

func (r *Registrar) registered() {
	r.setState(StateRegistered, nil)
	if r.service.TTL != nil {
		r.logger.Log("action", "register", "lease", r.client.LeaseID())
	} else {
		r.logger.Log("action", "register")
	}
}

// Deregister implements the sd.Registrar interface. Call it when you want your
// service to be deregistered from etcd, typically just prior to shutdown. It
// stops any retrying, deletes the key and releases its lease, also when
// Register was never called (as go-kit's). It returns within the client's
// request timeout, and within its dial timeout while etcd is unreachable;
// the key never comes back (see EtcdClient.DeregisterContext). Errors are
// logged; DeregisterContext returns them.
func (r *Registrar) Deregister() {
	ctx, cancel := context.Background(), context.CancelFunc(func() {})
	if ec, ok := r.client.(*EtcdClient); ok {
		ctx, cancel = ec.requestContext() // any other Client bounds its own Deregister
	}
	defer cancel()
	if err := r.DeregisterContext(ctx); err != nil {
		r.logger.Log("err", err)
		return
	}
	r.logger.Log("action", "deregister")
}

// DeregisterContext is Deregister bounded by ctx, returning the error
// instead of logging it. It is idempotent.
func (r *Registrar) DeregisterContext(ctx context.Context) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	r.stopRetrying()
	r.setState(StateDeregistered, nil)
	return r.leave(ctx)
}

// Pause takes the instance out of discovery (its key is deleted) while the
// process goes on, e.g. before a deploy or while draining. Resume puts it
// back. Both are no-ops when already in the wanted state.
func (r *Registrar) Pause(ctx context.Context) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	r.mu.Lock()
	st := r.state
	r.mu.Unlock()
	if st != StateRegistering && st != StateRegistered {
		return nil
	}
	r.stopRetrying()
	r.setState(StatePaused, nil)
	if err := r.leave(ctx); err != nil {
		return err
	}
	level.Info(r.logger).Log("action", "pause")
	return nil
}

// Resume undoes Pause, retrying until it succeeds or ctx ends.
func (r *Registrar) Resume(ctx context.Context) error {
	r.opMu.Lock()
	defer r.opMu.Unlock()
	if r.State() != StatePaused {
		return nil
	}
	r.setState(StateIdle, nil)
	return r.registerLocked(ctx)
}

// leave deletes the key: bounded by ctx through the real client, with
// go-kit's Deregister through any other Client.
func (r *Registrar) leave(ctx context.Context) error {
	var err error
	if ec, ok := r.client.(*EtcdClient); ok {
		err = ec.DeregisterContext(ctx, r.service)
	} else {
		err = r.client.Deregister(r.service)
	}
	if err != nil {
		r.setState(r.State(), err)
	}
	return err
}

// Status reports the registration's state, lease and last error.
func (r *Registrar) Status() Status {
	r.mu.Lock()
	st := Status{State: r.state, Err: r.lastErr}
	r.mu.Unlock()
	if st.State != StateRegistered {
		return st
	}
	if rep, ok := r.client.(registrationReporter); ok {
		id, kept, healthy, err := rep.registration(r.service.Key)
		if kept {
			st.LeaseID = id
			if !healthy {
				st.Err = err
			}
		}
	} else {
		st.LeaseID = r.client.LeaseID()
	}
	return st
}

// State returns the registrar's state.
func (r *Registrar) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

func (r *Registrar) stopRetrying() {
	r.mu.Lock()
	cancel, done := r.cancel, r.done
	r.cancel, r.done = nil, nil
	r.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (r *Registrar) setState(s State, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics.registrationMoved(r.state, s, true)
	r.state, r.lastErr = s, err
	close(r.changed)
	r.changed = make(chan struct{})
}

// permanent marks errors that retrying cannot fix.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }
