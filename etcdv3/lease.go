package etcdv3

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcdsd/etcdsd/internal/backoff"
)

// maxTxnOps stays within etcd's default limit of operations per transaction
// (--max-txn-ops 128), so that re-registering many services after a lease
// loss costs one round trip per 128 keys.
const maxTxnOps = 128

// maxTxnBytes keeps a re-grant's transaction well under etcd's default
// request limit (--max-request-bytes, 1.5 MiB), which registrations that
// etcd took one at a time may exceed together: a transaction etcd refuses
// would be retried forever. A key larger than this goes alone.
const maxTxnBytes = 1 << 20

// txnOpBytes is a generous allowance for an op's encoding beside its key
// and value (field tags, lengths, the lease).
const txnOpBytes = 64

// leaseKey identifies the lease that a registration shares with others: all
// services of one client with the same TTL and heartbeat use one lease, so
// that a thousand services cost one keepalive, not a thousand.
type leaseKey struct {
	seconds   int64
	heartbeat time.Duration
}

// sharedLease owns one etcd lease and the keys put under it. Its goroutine
// sends a keepalive every heartbeat and, when etcd says the lease is gone
// (expired during a partition, revoked, lost in a restore), grants a new one
// and puts every key again, with backoff, until the last key is removed.
type sharedLease struct {
	c      *EtcdClient
	key    leaseKey
	logger log.Logger

	// writeMu serialises the writes that involve the key set (put, delete,
	// re-grant), so that a deregistered key is never put back by a
	// concurrent re-grant.
	writeMu sync.Mutex

	mu       sync.Mutex
	id       clientv3.LeaseID
	services map[string]string // key → value
	orphans  map[string]string // deregistered keys whose delete failed, with their values; retried
	healthy  bool              // the last keepalive or put succeeded
	lastErr  error
	retired  bool // the last key left; the lease must not be reused
	running  bool

	ctx  context.Context // ends when the keeper must stop
	stop context.CancelFunc
	done chan struct{}
}

func newSharedLease(c *EtcdClient, key leaseKey) *sharedLease {
	ctx, stop := context.WithCancel(c.ctx)
	return &sharedLease{
		ctx:      ctx,
		stop:     stop,
		c:        c,
		key:      key,
		logger:   log.With(c.logger, "ttl", fmt.Sprintf("%ds", key.seconds)),
		services: make(map[string]string),
		orphans:  make(map[string]string),
		done:     make(chan struct{}),
	}
}

// errLeaseRetired tells a registration to pick a fresh lease: it raced with
// the removal of the last key of this one.
var errLeaseRetired = errors.New("lease retired")

// RegisterContext is Register with a caller's context. It returns within
// ctx, and within the dial timeout while etcd is unreachable.
func (c *EtcdClient) RegisterContext(ctx context.Context, s Service) error {
	if err := s.validate(); err != nil {
		return err
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	ttl := s.ttlOrDefault()
	key := leaseKey{seconds: ttl.leaseSeconds(), heartbeat: ttl.heartbeat}
	for {
		l, err := c.lease(key)
		if err != nil {
			return fmt.Errorf("etcdv3: register %q: %w", s.Key, err)
		}
		id, err := l.add(ctx, s.Key, s.Value)
		if errors.Is(err, errLeaseRetired) {
			continue
		}
		if why := refusal(err); why != "" {
			return permanent{fmt.Errorf("etcdv3: register %q (value of %d bytes, lease TTL %ds): etcd refuses it for good, %s: %w",
				s.Key, len(s.Value), key.seconds, why, err)}
		}
		if err != nil {
			return fmt.Errorf("etcdv3: register %q: %w", s.Key, callError(ctx, err))
		}
		c.mu.Lock()
		c.lastLease = int64(id)
		c.mu.Unlock()
		return nil
	}
}

// regrantError is the error of a re-grant made while registering a key: it
// put every key of the lease, so etcd's refusal of it may be about the
// others or about their sum, never a reason to refuse this key for good.
type regrantError struct{ error }

func (e regrantError) Unwrap() error { return e.error }

// refusal says why etcd refused a registration for a reason that retrying
// cannot fix, or "" when err may pass.
func refusal(err error) string {
	switch {
	case err == nil, errors.As(err, new(regrantError)):
		return ""
	case errors.Is(err, rpctypes.ErrRequestTooLarge),
		// gRPC's message limits, the client's or etcd's (its request limit
		// plus an allowance); etcd's "too many requests", which passes,
		// has the same code.
		status.Code(err) == codes.ResourceExhausted && !errors.Is(err, rpctypes.ErrTooManyRequests):
		return "the request is too large"
	case errors.Is(err, rpctypes.ErrLeaseTTLTooLarge):
		return "the lease TTL is over its maximum"
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		return "the client's user may not write the key"
	}
	return ""
}

// DeregisterContext is Deregister with a caller's context. It returns
// within ctx, and within the dial timeout while etcd is unreachable. A key
// this client keeps alive is never put back once this is called, even if
// the call fails: its lease is revoked, or else it expires within its TTL
// (when other keys share the lease, the delete is retried until it
// succeeds).
//
// A key this client keeps is deleted only while it still holds this
// client's lease and value, so that a process which registered the key
// since (a rolling restart reusing it) keeps its registration. A key this
// client does not keep is deleted whatever holds it, as go-kit's
// Deregister does.
func (c *EtcdClient) DeregisterContext(ctx context.Context, s Service) error {
	return c.deregister(ctx, s, false)
}

// deregister is DeregisterContext; with keptOnly, a key this client does
// not keep is left alone: a Registrar that registered it deletes only what
// it put.
func (c *EtcdClient) deregister(ctx context.Context, s Service, keptOnly bool) error {
	if s.Key == "" {
		return ErrNoKey
	}
	if err := ValidateKey(s.Key); err != nil {
		return fmt.Errorf("etcdv3: deregister %q: %w", s.Key, err)
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	c.mu.Lock()
	var owner *sharedLease
	for _, l := range c.leases {
		if l.has(s.Key) {
			owner = l
			break
		}
	}
	c.mu.Unlock()
	if owner == nil && keptOnly {
		return nil
	}
	if owner == nil {
		// Not kept alive by this client (or already deregistered): still
		// make sure the key is gone, as go-kit's Deregister does.
		if _, err := c.cli.Delete(ctx, s.Key); err != nil {
			return fmt.Errorf("etcdv3: deregister %q: %w", s.Key, callError(ctx, err))
		}
		return nil
	}
	if err := owner.remove(ctx, s.Key); err != nil {
		return fmt.Errorf("etcdv3: deregister %q: %w", s.Key, callError(ctx, err))
	}
	return nil
}

// registration reports how the lease keeping key alive is doing.
func (c *EtcdClient) registration(key string) (leaseID int64, kept, healthy bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.leases {
		l.mu.Lock()
		_, ok := l.services[key]
		id, h, e := l.id, l.healthy, l.lastErr
		l.mu.Unlock()
		if ok {
			return int64(id), true, h, e
		}
	}
	return 0, false, false, nil
}

// requestTimeout bounds each call a Registrar makes for its methods that
// take no context.
func (c *EtcdClient) requestTimeout() time.Duration { return c.opts.RequestTimeout }

// metrics are the client's ClientOptions.Metrics, or nil.
func (c *EtcdClient) metrics() *Metrics { return c.opts.Metrics }

// lease returns the shared lease for key, creating it if needed.
func (c *EtcdClient) lease(key leaseKey) (*sharedLease, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClosed
	}
	l, ok := c.leases[key]
	if !ok {
		l = newSharedLease(c, key)
		c.leases[key] = l
	}
	return l, nil
}

// forget drops l from the client once its last key is gone.
func (c *EtcdClient) forget(l *sharedLease) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leases[l.key] == l {
		delete(c.leases, l.key)
	}
}

func (l *sharedLease) has(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.services[key]
	return ok
}

// add puts key under the lease, granting it first if needed, and starts the
// keepalive goroutine with the first key.
func (l *sharedLease) add(ctx context.Context, key, value string) (clientv3.LeaseID, error) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	retired, id := l.retired, l.id
	l.mu.Unlock()
	if retired {
		return 0, errLeaseRetired
	}
	if id == clientv3.NoLease {
		var err error
		if id, err = l.grant(ctx); err != nil {
			return 0, err
		}
	}
	_, err := l.c.cli.Put(ctx, key, value, clientv3.WithLease(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		// The lease expired or was revoked since the last heartbeat: take
		// a new one now, with this key and the others on it.
		if id, err = l.regrantLocked(ctx, map[string]string{key: value}); err == nil {
			l.c.opts.Metrics.reregistered()
		} else {
			err = regrantError{err}
		}
	}
	if err != nil {
		// etcd may have applied the put all the same (a timeout says
		// nothing), and the other keys keep the lease alive: until a retry
		// succeeds, the key is deleted at the next heartbeat that gets
		// through, so a Deregister meanwhile cannot leave it behind. A put
		// etcd refused was not applied.
		l.mu.Lock()
		if _, live := l.services[key]; !live && refusal(err) == "" {
			l.orphans[key] = value
		}
		l.mu.Unlock()
		return 0, err
	}
	l.mu.Lock()
	l.services[key] = value
	delete(l.orphans, key)
	l.healthy, l.lastErr = true, nil
	start := !l.running
	l.running = true
	l.mu.Unlock()
	if start {
		go l.keepAlive()
	}
	return id, nil
}

// remove deletes key. Removing the last key stops the keeper and revokes the
// lease, which deletes the key with it.
func (l *sharedLease) remove(ctx context.Context, key string) error {
	l.writeMu.Lock()
	l.mu.Lock()
	value := l.services[key]
	delete(l.services, key)
	last := len(l.services) == 0
	if last {
		l.retired = true
	}
	running := l.running
	id := l.id
	l.mu.Unlock()
	if !last {
		defer l.writeMu.Unlock()
		if err := l.deleteOurs(ctx, id, key, value); err != nil {
			l.mu.Lock()
			l.orphans[key] = value
			l.mu.Unlock()
			return fmt.Errorf("%w (the key stays until a later retry deletes it)", err)
		}
		return nil
	}
	l.writeMu.Unlock()
	l.c.forget(l)
	l.stop()
	if running {
		<-l.done
	}
	return l.revoke(ctx, key, value)
}

// deleteOurs deletes key only while it holds lease id and value, in one
// transaction: a key put since by someone else, such as the next process
// of a rolling restart, is theirs.
func (l *sharedLease) deleteOurs(ctx context.Context, id clientv3.LeaseID, key, value string) error {
	_, err := l.c.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.LeaseValue(key), "=", id),
		clientv3.Compare(clientv3.Value(key), "=", value),
	).Then(clientv3.OpDelete(key)).Commit()
	return err
}

// close stops the keeper; with revoke, it also revokes the lease so that
// the keys leave etcd now rather than at expiry.
func (l *sharedLease) close(revoke bool) {
	l.writeMu.Lock()
	l.mu.Lock()
	l.retired = true
	running := l.running
	l.mu.Unlock()
	l.writeMu.Unlock()
	l.stop()
	if running {
		<-l.done
	}
	if up, _ := l.c.reach.state(); revoke && up {
		// Bounded tightly: a closing program should not wait long for a
		// courtesy; unrevoked keys still expire within their TTL.
		ctx, cancel := context.WithTimeout(context.Background(), min(l.c.opts.RequestTimeout, time.Second))
		defer cancel()
		if err := l.revoke(ctx, "", ""); err != nil {
			level.Warn(l.logger).Log("msg", "revoke lease on close", "err", err)
		}
	}
}

func (l *sharedLease) revoke(ctx context.Context, key, value string) error {
	l.mu.Lock()
	id := l.id
	l.mu.Unlock()
	if id == clientv3.NoLease {
		return nil
	}
	_, err := l.c.cli.Revoke(ctx, id)
	if err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return nil
	}
	if key != "" {
		// Nothing keeps the lease alive any more: the key goes at expiry.
		if derr := l.deleteOurs(ctx, id, key, value); derr == nil {
			return nil
		}
	}
	return fmt.Errorf("revoke lease %s: %w (its keys expire within %ds)", leaseHex(int64(id)), err, l.key.seconds)
}

// grant takes a new lease and makes it current.
func (l *sharedLease) grant(ctx context.Context) (clientv3.LeaseID, error) {
	resp, err := l.c.cli.Grant(ctx, l.key.seconds)
	if err != nil {
		return 0, fmt.Errorf("grant lease of %ds: %w", l.key.seconds, err)
	}
	l.mu.Lock()
	l.id = resp.ID
	l.mu.Unlock()
	return resp.ID, nil
}

// putAll puts kvs under lease id, in transactions of at most maxTxnOps keys
// and maxTxnBytes.
func (l *sharedLease) putAll(ctx context.Context, id clientv3.LeaseID, kvs map[string]string) error {
	ops := make([]clientv3.Op, 0, min(len(kvs), maxTxnOps))
	size := 0
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := l.c.cli.Txn(ctx).Then(ops...).Commit()
		ops, size = ops[:0], 0
		return err
	}
	for k, v := range kvs {
		n := len(k) + len(v) + txnOpBytes
		if size+n > maxTxnBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		ops = append(ops, clientv3.OpPut(k, v, clientv3.WithLease(id)))
		size += n
		if len(ops) == maxTxnOps {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// keepAlive is the keeper goroutine.
func (l *sharedLease) keepAlive() {
	defer close(l.done)
	ctx := l.ctx
	tick := time.NewTicker(l.key.heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		if err := l.heartbeat(ctx); errors.Is(err, rpctypes.ErrLeaseNotFound) {
			l.recover(ctx)
		}
	}
}

// heartbeat refreshes the lease once and retries failed deletes.
func (l *sharedLease) heartbeat(ctx context.Context) error {
	l.mu.Lock()
	id := l.id
	wasHealthy := l.healthy
	l.mu.Unlock()
	hctx, cancel := context.WithTimeout(ctx, l.c.opts.RequestTimeout)
	defer cancel()
	_, err := l.c.cli.KeepAliveOnce(hctx, id)
	if ctx.Err() != nil {
		return nil
	}
	switch {
	case err == nil:
		if !wasHealthy {
			level.Info(l.logger).Log("msg", "lease keepalive restored", "lease", leaseHex(int64(id)))
		}
		l.setHealth(nil)
		l.deleteOrphans(hctx)
		return nil
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		level.Warn(l.logger).Log("msg", "lease lost, registering again", "lease", leaseHex(int64(id)))
	default:
		if wasHealthy {
			level.Warn(l.logger).Log("msg", "lease keepalive failed, retrying", "lease", leaseHex(int64(id)), "err", err)
		}
	}
	l.c.opts.Metrics.keepaliveFailed()
	l.setHealth(err)
	return err
}

func (l *sharedLease) setHealth(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.healthy, l.lastErr = err == nil, err
}

func (l *sharedLease) deleteOrphans(ctx context.Context) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	orphans := maps.Clone(l.orphans)
	id := l.id
	l.mu.Unlock()
	for k, v := range orphans {
		if err := l.deleteOurs(ctx, id, k, v); err != nil {
			return
		}
		l.mu.Lock()
		delete(l.orphans, k)
		l.mu.Unlock()
	}
}

// recover grants a new lease and puts every key again, retrying with
// backoff until it succeeds or the keeper stops.
func (l *sharedLease) recover(ctx context.Context) {
	b := backoff.New(50*time.Millisecond, max(l.key.heartbeat, time.Second))
	for {
		err := l.regrant(ctx)
		if err == nil {
			l.c.opts.Metrics.reregistered()
			level.Info(l.logger).Log("msg", "registered again on a new lease", "lease", leaseHex(int64(l.currentID())), "keys", l.count())
			l.setHealth(nil)
			return
		}
		l.setHealth(err)
		level.Warn(l.logger).Log("msg", "register again failed, retrying", "err", err)
		if !b.Sleep(ctx) {
			return
		}
	}
}

func (l *sharedLease) regrant(ctx context.Context) error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, l.c.opts.RequestTimeout)
	defer cancel()
	_, err := l.regrantLocked(rctx, nil)
	return err
}

// regrantLocked grants a new lease and puts every key on it, and the keys
// in extra too. The caller holds writeMu.
//
// The new lease becomes current only once every key is on it: were it
// current before, a failed put would leave the keeper refreshing a lease
// with no key on it, its heartbeats succeeding, and the keys lost for good.
// Left on the lost lease, the keeper's next heartbeat gets LeaseNotFound
// and re-grants again.
func (l *sharedLease) regrantLocked(ctx context.Context, extra map[string]string) (clientv3.LeaseID, error) {
	old := l.currentID()
	resp, err := l.c.cli.Grant(ctx, l.key.seconds)
	if err != nil {
		return 0, fmt.Errorf("grant lease of %ds: %w", l.key.seconds, err)
	}
	id := resp.ID
	l.mu.Lock()
	kvs := maps.Clone(l.services)
	l.mu.Unlock()
	maps.Copy(kvs, extra)
	if err := l.putAll(ctx, id, kvs); err != nil {
		// Best effort, within the caller's bound: the keys already put on
		// the new lease leave with it now rather than at its expiry, and
		// the next re-grant puts them all again.
		l.c.cli.Revoke(ctx, id)
		return 0, fmt.Errorf("put %d keys on lease %s: %w", len(kvs), leaseHex(int64(id)), err)
	}
	l.mu.Lock()
	l.id = id
	l.mu.Unlock()
	if old != clientv3.NoLease && old != id {
		// Best effort: the old lease is gone in the usual case.
		l.c.cli.Revoke(ctx, old)
	}
	return id, nil
}

func (l *sharedLease) currentID() clientv3.LeaseID {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.id
}

func (l *sharedLease) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.services)
}

// leaseHex spells a lease ID as etcdctl prints it ("lease %016x
// granted"), in every log line and error, so that one grep finds a lease
// in both.
func leaseHex(id int64) string { return fmt.Sprintf("%016x", id) }
