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
	// StateIdle: never registered, a RegisterContext gave up, the client
	// was closed, or the registration can never succeed (Status.Err says
	// why).
	StateIdle State = iota
	// StateRegistering: the first put has not succeeded yet; retrying.
	StateRegistering
	// StateRegistered: the key was put and is kept alive by the client,
	// which also puts it back after a lease loss.
	StateRegistered
	// StatePaused: left discovery on purpose (Pause); Resume comes back.
	// A Resume that gives up returns here, so that Resume can be called
	// again.
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

// registrarClient is the context API a Registrar registers through: the
// real client's (lease.go), or go-kit's five methods adapted to it
// (goKitClient). registrarClientOf picks one.
type registrarClient interface {
	// RegisterContext puts s and keeps it registered, within ctx.
	RegisterContext(ctx context.Context, s Service) error
	// deregister deletes s.Key within ctx; with keptOnly, only when the
	// client keeps it, so that a Registrar deletes only what it put.
	deregister(ctx context.Context, s Service, keptOnly bool) error
	// registration reports how the lease keeping key is doing.
	registration(key string) (leaseID int64, kept, healthy bool, err error)
	// LeaseID is go-kit's: the lease of the client's latest registration.
	LeaseID() int64
	// requestTimeout bounds each call made for a method that takes no
	// context (Register, Deregister).
	requestTimeout() time.Duration
	// metrics are the client's, or nil.
	metrics() *Metrics
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
// TTL option, in hex as etcdctl prints it) or "action" "deregister" on success. A Register that failed
// and is retried adds a warning when the error changes (and once a minute
// while it persists) and the "action" "register" line once it succeeds.
type Registrar struct {
	client  registrarClient
	service Service
	logger  log.Logger
	metrics *Metrics // the client's, or nil

	// mu guards the fields below and is never held while waiting on etcd:
	// Deregister and Pause take the attempts in flight away from their
	// owner and cancel them, so they return within their own bound.
	mu      sync.Mutex
	state   State
	lastErr error
	run     *run // the attempts in flight while registering
	// joined: a registration was started, so Deregister deletes only what
	// it put; before that it deletes the key, as go-kit's.
	joined bool
	// leaving counts the deletes in flight (Pause, Deregister, the undo of
	// attempts taken away), counted from the same step that changes the
	// state; left is closed when the count drops to zero. A registration
	// started meanwhile waits for left before it puts, so that a delete
	// decided before it never lands after its put.
	leaving int
	left    chan struct{}
}

// run is one registration's attempts: the first in the caller's goroutine,
// the retries in a goroutine of their own. Whoever takes it from
// Registrar.run (Deregister, Pause, a RegisterContext giving up) cancels it;
// an attempt that succeeds after that takes its key away again.
type run struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed once the attempts have ended
	err    error         // the outcome, set before done is closed
	// resumed: started by Resume, so giving up returns to paused, where
	// only Resume registers again.
	resumed bool
	// after, when not nil, is closed once the deletes in flight when the
	// attempts started have ended; no attempt puts before.
	after <-chan struct{}
}

// NewRegistrar returns a etcd Registrar acting on the provided catalog
// registration (service).
func NewRegistrar(client Client, service Service, logger log.Logger) *Registrar {
	if logger == nil {
		logger = log.NewNopLogger()
	}
	rc := registrarClientOf(client)
	r := &Registrar{
		client:  rc,
		service: service,
		logger:  log.With(logger, "key", service.Key, "value", service.Value),
		metrics: rc.metrics(),
	}
	r.metrics.registrationMoved(StateIdle, StateIdle, false)
	return r
}

// Register implements the sd.Registrar interface. Call it when you want your
// service to be registered in etcd, typically at startup. It tries once
// before returning (within the client's request timeout, and its dial
// timeout while etcd is unreachable); on failure it logs the error and
// keeps retrying in the background until it succeeds, Deregister is
// called or the client is closed. What retrying cannot fix is not retried:
// an empty or malformed key, an empty value or one that consumers cannot
// parse (see instance.Parse), and etcd's refusals for good (a request too
// large, a lease TTL over etcd's maximum, permission denied); Status
// reports it.
//
// On a Client other than the real one, such as a test fake with go-kit's
// five methods, the bound is DefaultRequestTimeout: a Register of the
// client that has not returned by then is left running and counts as
// failed (undone if it succeeds), and the calls after it wait for it.
func (r *Registrar) Register() {
	if _, err := r.start(context.Background(), false); err != nil {
		r.logger.Log("err", err)
	}
}

// RegisterContext registers, retrying with backoff until it succeeds or ctx
// ends, and returns the error then. It returns at once, with the error, for
// what can never succeed (see Register): an empty key or value gives the
// bare ErrNoKey or ErrNoValue, as in go-kit, a value consumers cannot parse
// an error wrapping instance.ErrMalformed. Deregister or Pause ends it with
// an error. Each attempt, the first one too, ends with ctx.
func (r *Registrar) RegisterContext(ctx context.Context) error {
	return r.await(ctx, false)
}

// await starts registering (from Paused only, when resuming) and waits
// until the attempts end or ctx does.
func (r *Registrar) await(ctx context.Context, resume bool) error {
	ru, err := r.start(ctx, resume)
	var p permanent
	if errors.As(err, &p) {
		return p.error // bare, as go-kit returns ErrNoKey and ErrNoValue
	}
	if ru == nil {
		return nil
	}
	select {
	case <-ru.done:
		return ru.err
	case <-ctx.Done():
	}
	r.mu.Lock()
	mine := r.run == ru
	lastErr := r.lastErr
	if mine {
		r.run = nil
		if ru.resumed {
			r.setStateLocked(StatePaused, lastErr)
		} else {
			r.setStateLocked(StateIdle, lastErr)
		}
	}
	r.mu.Unlock()
	ru.cancel()
	<-ru.done // at once: its etcd calls end with the cancel
	if !mine {
		return ru.err // it ended, or Deregister or Pause took it, first
	}
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	return fmt.Errorf("etcdv3: register %q: gave up: %w", r.service.Key, errors.Join(ctx.Err(), lastErr))
}

// start makes one attempt, within ctx too, and, if it fails for a reason
// that may pass, leaves a goroutine retrying. It returns the attempts in
// flight, or nil once registered; with resume, it does nothing unless
// paused.
func (r *Registrar) start(ctx context.Context, resume bool) (*run, error) {
	if err := r.service.validate(); err != nil {
		r.setState(StateIdle, err)
		return nil, permanent{err}
	}
	r.mu.Lock()
	switch {
	case r.state == StateRegistering:
		ru := r.run
		r.mu.Unlock()
		return ru, nil
	case r.state == StateRegistered, resume && r.state != StatePaused:
		r.mu.Unlock()
		return nil, nil
	}
	runCtx, cancel := context.WithCancel(context.Background())
	ru := &run{ctx: runCtx, cancel: cancel, done: make(chan struct{}), resumed: resume}
	if r.leaving > 0 {
		ru.after = r.left
	}
	r.run, r.joined = ru, true
	r.setStateLocked(StateRegistering, nil)
	r.mu.Unlock()
	r.service.ttlOrDefault().warnRepaired(r.logger)
	err := r.register(ctx, ru)
	var p permanent
	switch {
	case err == nil:
		r.finish(ru, nil)
		return ru, nil
	case errors.As(err, &p):
		r.finish(ru, p.error)
		return nil, err
	case errors.Is(err, errClosed):
		// A closed client never registers again: nothing to retry.
		r.finish(ru, err)
		return ru, err
	}
	r.setRunErr(ru, err)
	go r.retry(ru, err)
	return ru, err
}

// register makes one attempt of ru, bounded by ru.ctx, the caller's ctx
// and the client's request timeout. It puts only once the deletes ru waits
// for have ended.
func (r *Registrar) register(caller context.Context, ru *run) error {
	ctx, cancel := context.WithCancelCause(ru.ctx)
	defer cancel(nil)
	defer context.AfterFunc(caller, func() { cancel(context.Cause(caller)) })()
	ctx, cancelTimeout := context.WithTimeout(ctx, r.client.requestTimeout())
	defer cancelTimeout()
	if ru.after != nil {
		select {
		case <-ru.after:
		case <-ctx.Done():
			return fmt.Errorf("etcdv3: register %q: waiting for the delete before it to end: %w", r.service.Key, context.Cause(ctx))
		}
	}
	return r.client.RegisterContext(ctx, r.service)
}

// retryLogEvery is how often a retry that keeps failing with the same error
// is logged again.
const retryLogEvery = time.Minute

func (r *Registrar) retry(ru *run, lastErr error) {
	b := backoff.New(100*time.Millisecond, r.service.ttlOrDefault().heartbeat)
	logged := time.Now()
	for b.Sleep(ru.ctx) {
		err := r.register(context.Background(), ru)
		var p permanent
		switch {
		case err == nil:
			r.finish(ru, nil)
			return
		case errors.As(err, &p):
			level.Error(r.logger).Log("msg", "register refused, not retrying", "err", p.error)
			r.finish(ru, p.error)
			return
		case errors.Is(err, errClosed):
			// Final: a goroutine left retrying would outlive the client.
			level.Warn(r.logger).Log("msg", "register stopped, client closed", "err", err)
			r.finish(ru, err)
			return
		}
		if ru.ctx.Err() != nil {
			break
		}
		if err.Error() != lastErr.Error() || time.Since(logged) >= retryLogEvery {
			level.Warn(r.logger).Log("msg", "register failed, retrying", "err", err)
			logged = time.Now()
		}
		lastErr = err
		r.setRunErr(ru, err)
	}
	r.finish(ru, ru.ctx.Err())
}

// finish ends the attempts of ru with err (nil: registered). When ru was
// taken away meanwhile, a registration it made anyway is undone, unless a
// later Register has started over.
func (r *Registrar) finish(ru *run, err error) {
	r.mu.Lock()
	mine := r.run == ru
	undo := false
	if mine {
		r.run = nil
		if err == nil {
			r.setStateLocked(StateRegistered, nil)
		} else {
			r.setStateLocked(StateIdle, err)
		}
		ru.err = err
	} else {
		ru.err = fmt.Errorf("etcdv3: register %q: stopped: registrar is %v", r.service.Key, r.state)
		undo = err == nil && r.state != StateRegistering && r.state != StateRegistered
		if undo {
			r.beginLeaveLocked()
		}
	}
	r.mu.Unlock()
	if undo {
		ctx, cancel := r.requestContext()
		if lerr := r.leave(ctx); lerr != nil {
			r.logger.Log("err", lerr)
		}
		cancel()
		r.endLeave()
	}
	if mine && err == nil {
		r.registered()
	}
	ru.cancel()
	close(ru.done)
}

func (r *Registrar) registered() {
	if r.service.TTL != nil {
		r.logger.Log("action", "register", "lease", leaseHex(r.client.LeaseID()))
	} else {
		r.logger.Log("action", "register")
	}
}

// Deregister implements the sd.Registrar interface. Call it when you want your
// service to be deregistered from etcd, typically just prior to shutdown. It
// stops any retrying, deletes the key and releases its lease. With the real
// client, the key is deleted only while it still holds this registration's
// lease and value: a process that registered the key since (a rolling
// restart reusing it) keeps its registration. Called before any Register,
// it deletes the key whatever holds it, as go-kit's. It returns within the
// client's request timeout, and within its dial timeout while etcd is
// unreachable; the key never comes back (see EtcdClient.DeregisterContext).
// On any other Client, it returns within DefaultRequestTimeout, and the
// client's Deregister is made even when it returns later, after the calls
// made before it. Errors are logged; DeregisterContext returns them.
func (r *Registrar) Deregister() {
	ctx, cancel := r.requestContext()
	defer cancel()
	if err := r.DeregisterContext(ctx); err != nil {
		r.logger.Log("err", err)
		return
	}
	r.logger.Log("action", "deregister")
}

// requestContext bounds a call that takes no context by the client's
// request timeout.
func (r *Registrar) requestContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), r.client.requestTimeout())
}

// DeregisterContext is Deregister bounded by ctx, returning the error
// instead of logging it. It is idempotent.
func (r *Registrar) DeregisterContext(ctx context.Context) error {
	ru, _ := r.take(StateDeregistered)
	defer r.endLeave()
	if err := r.stop(ctx, ru); err != nil {
		return fmt.Errorf("etcdv3: deregister %q: %w", r.service.Key, err)
	}
	return r.leave(ctx)
}

// take moves to state, taking the attempts in flight from their owner; to
// paused, only from registering or registered (ok false otherwise), in the
// same step, so that a Deregister meanwhile is never undone. With ok, it
// counts the delete that follows, which the caller ends with endLeave.
func (r *Registrar) take(state State) (ru *run, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if state == StatePaused && r.state != StateRegistering && r.state != StateRegistered {
		return nil, false
	}
	ru, r.run = r.run, nil
	r.setStateLocked(state, nil)
	r.beginLeaveLocked()
	return ru, true
}

// beginLeaveLocked counts a delete about to start; the caller holds mu.
func (r *Registrar) beginLeaveLocked() {
	if r.leaving == 0 {
		r.left = make(chan struct{})
	}
	r.leaving++
}

// endLeave ends a delete counted by beginLeaveLocked, whether or not it
// was made, releasing the registrations that wait for it.
func (r *Registrar) endLeave() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.leaving--; r.leaving == 0 {
		close(r.left)
	}
}

// stop cancels the attempts ru, taken by take, waiting for them to end
// within ctx (one that succeeds later undoes itself).
func (r *Registrar) stop(ctx context.Context, ru *run) error {
	if ru == nil {
		return nil
	}
	ru.cancel()
	select {
	case <-ru.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Pause takes the instance out of discovery (its key is deleted) while the
// process goes on, e.g. before a deploy or while draining. Resume puts it
// back. Both are no-ops when already in the wanted state.
func (r *Registrar) Pause(ctx context.Context) error {
	ru, ok := r.take(StatePaused)
	if !ok {
		return nil
	}
	defer r.endLeave()
	if err := r.stop(ctx, ru); err != nil {
		return fmt.Errorf("etcdv3: pause %q: %w", r.service.Key, err)
	}
	if err := r.leave(ctx); err != nil {
		return err
	}
	level.Info(r.logger).Log("action", "pause")
	return nil
}

// Resume undoes Pause, retrying until it succeeds or ctx ends. A Resume
// that gives up leaves the Registrar paused, with the error in Status, so
// that Resume may be called again.
func (r *Registrar) Resume(ctx context.Context) error {
	return r.await(ctx, true)
}

// leave deletes the key within ctx: once a registration was started, only
// what it put.
func (r *Registrar) leave(ctx context.Context) error {
	r.mu.Lock()
	joined := r.joined
	r.mu.Unlock()
	err := r.client.deregister(ctx, r.service, joined)
	if err != nil {
		r.mu.Lock()
		r.lastErr = err
		r.mu.Unlock()
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
	if id, kept, healthy, err := r.client.registration(r.service.Key); kept {
		st.LeaseID = id
		if !healthy {
			st.Err = err
		}
	}
	return st
}

// State returns the registrar's state.
func (r *Registrar) State() State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// setRunErr records a failed attempt of ru, unless ru was taken away.
func (r *Registrar) setRunErr(ru *run, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.run == ru {
		r.setStateLocked(StateRegistering, err)
	}
}

func (r *Registrar) setState(s State, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setStateLocked(s, err)
}

func (r *Registrar) setStateLocked(s State, err error) {
	r.metrics.registrationMoved(r.state, s, true)
	r.state, r.lastErr = s, err
}

// permanent marks errors that retrying cannot fix.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }
