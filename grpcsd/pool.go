package grpcsd

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"google.golang.org/grpc"

	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// Errors wrapped by the Pool's lookups, for errors.Is.
var (
	// ErrNoConn: nothing is registered under the prefix or id asked for.
	ErrNoConn = errors.New("no connection")
	// ErrNotWatched: the prefix is not one the Pool watches.
	ErrNotWatched = errors.New("prefix not watched")
	// ErrClosed: the Pool is closed.
	ErrClosed = errors.New("pool closed")
)

// PoolEventType says what happened to a key's connection.
type PoolEventType int

// Pool event types.
const (
	// Added: a key appeared and its connection was created.
	Added PoolEventType = iota + 1
	// Updated: a key's value changed. If its address changed, Conn is a new
	// connection and the old one is closed after the callback; otherwise
	// Conn is the same connection with the new Instance.
	Updated
	// Removed: a key went away (or its value became malformed). Conn is
	// no longer returned by lookups and is closed after the callback.
	Removed
)

// String returns "added", "updated" or "removed".
func (t PoolEventType) String() string {
	switch t {
	case Added:
		return "added"
	case Updated:
		return "updated"
	case Removed:
		return "removed"
	}
	return fmt.Sprintf("PoolEventType(%d)", int(t))
}

// PoolEvent is one change of a Pool, given to the WithOnChange callback.
type PoolEvent struct {
	Type     PoolEventType
	Prefix   string // the watched prefix the key is under
	Key      string // the etcd key
	ID       string // the key without its prefix, as GetByID takes it
	Instance instance.Instance
	Conn     *grpc.ClientConn
}

// Pool keeps one *grpc.ClientConn per etcd key under some prefixes: created
// (connecting lazily, on its first RPC) when a key appears, replaced when its
// address changes, closed when the key goes and on Close. Each prefix is
// followed by etcdsd's pipeline, so the existing keys and the watch come
// from one revision and no change is missed; after compaction or an outage
// the net difference is applied. A Pool is safe for concurrent use
// and holds no global state.
//
// A prefix not ending in "/" names a directory: "/backends/agent" follows
// the keys under "/backends/agent/", never those of "/backends/agent-x/".
// The id of a key, for GetByID, is the rest of the key after the prefix
// (and after the slash that follows a prefix not ending in one): under
// "/backends/agent/" or "/backends/agent", the id of
// "/backends/agent/agent1" is "agent1". It is the etcd key's, not the "id"
// field of a JSON value (that one is in PoolEvent.Instance).
type Pool struct {
	cfg    poolConfig
	logger log.Logger
	taps   []*pipeline.Tap

	mu       sync.RWMutex
	prefixes map[string]*poolPrefix
	closed   bool
}

// poolPrefix is the state of one watched prefix.
type poolPrefix struct {
	byID   map[string]*poolEntry
	sorted []*poolEntry // by key; replaced, never modified, on change
	next   atomic.Uint64
}

type poolEntry struct {
	key  string
	id   string
	inst instance.Instance
	addr string
	conn *grpc.ClientConn
}

// NewPool returns a Pool following prefixes through c. ctx bounds the
// initial read of etcd. It fails for no prefix, an invalid, repeated or
// overlapping prefix (one inside another), or when etcd cannot be read;
// values that do not parse are skipped and logged.
func NewPool(ctx context.Context, c etcdv3.Client, prefixes []string, opts ...PoolOption) (*Pool, error) {
	var cfg poolConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = log.NewNopLogger()
	}
	if c == nil {
		return nil, errors.New("grpcsd: new pool: nil etcd client")
	}
	if err := checkPrefixes(prefixes); err != nil {
		return nil, fmt.Errorf("grpcsd: new pool: %w", err)
	}
	p := &Pool{cfg: cfg, logger: cfg.logger, prefixes: make(map[string]*poolPrefix, len(prefixes))}
	for _, prefix := range prefixes {
		p.prefixes[prefix] = &poolPrefix{byID: make(map[string]*poolEntry)}
	}
	for _, prefix := range prefixes {
		logger := log.With(cfg.logger, "prefix", prefix)
		feed := pipeline.NewFeed(pipeline.WithLogger(logger), pipeline.WithObserver(func(b pipeline.Batch) { p.apply(prefix, b) }))
		dir := dirOf(prefix)
		tap, err := pipeline.Share(ctx, pipeline.ShareKey{Client: c, Prefix: dir}, pipeline.ShareOptions{
			Source:   func(log.Logger) pipeline.Source { return pipeline.SourceFor(c, dir) },
			FailFast: true,
			Logger:   logger,
		})
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("grpcsd: new pool: %w", err)
		}
		tap.Follow(feed)
		p.taps = append(p.taps, tap)
	}
	return p, nil
}

func checkPrefixes(prefixes []string) error {
	if len(prefixes) == 0 {
		return errors.New("no prefix given")
	}
	for i, a := range prefixes {
		if err := etcdv3.ValidatePrefix(a); err != nil {
			return fmt.Errorf("prefix %q: %w", a, err)
		}
		for _, b := range prefixes[:i] {
			if da, db := dirOf(a), dirOf(b); strings.HasPrefix(da, db) || strings.HasPrefix(db, da) {
				return fmt.Errorf("prefixes %q and %q overlap: a key would have two connections", b, a)
			}
		}
	}
	return nil
}

// apply turns one batch of changes into connection changes, then tells
// the callback and closes the connections that went away.
func (p *Pool) apply(prefix string, b pipeline.Batch) {
	if b.Err != nil {
		level.Warn(p.logger).Log("msg", "etcd unavailable, keeping connections", "prefix", prefix, "err", b.Err)
		return
	}
	var events []PoolEvent
	var stale []*grpc.ClientConn
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	pp := p.prefixes[prefix]
	for _, ch := range b.Changes {
		id := keyID(prefix, ch.Key)
		old := pp.byID[id]
		if ch.Op == pipeline.Delete {
			if old != nil {
				delete(pp.byID, id)
				events = append(events, event(Removed, prefix, old))
				stale = append(stale, old.conn)
			}
			continue
		}
		e, err := p.entry(ch.Key, id, ch.Instance, old)
		if err != nil {
			level.Error(p.logger).Log("msg", "skipping instance", "prefix", prefix, "key", ch.Key, "err", err)
			if old != nil {
				delete(pp.byID, id)
				events = append(events, event(Removed, prefix, old))
				stale = append(stale, old.conn)
			}
			continue
		}
		pp.byID[id] = e
		switch {
		case old == nil:
			events = append(events, event(Added, prefix, e))
		default:
			events = append(events, event(Updated, prefix, e))
			if old.conn != e.conn {
				stale = append(stale, old.conn)
			}
		}
	}
	sorted := slices.Collect(maps.Values(pp.byID))
	slices.SortFunc(sorted, func(a, b *poolEntry) int { return strings.Compare(a.key, b.key) })
	pp.sorted = sorted
	p.mu.Unlock()

	if p.cfg.onChange != nil {
		for _, ev := range events {
			p.cfg.onChange(ev)
		}
	}
	for _, c := range stale {
		c.Close()
	}
}

// entry returns the key's entry: old with the new instance when the
// address is unchanged, else a new connection.
func (p *Pool) entry(key, id string, inst instance.Instance, old *poolEntry) (*poolEntry, error) {
	addr, err := dialAddress(inst.Address)
	if err != nil {
		return nil, err
	}
	if old != nil && old.addr == addr {
		return &poolEntry{key: key, id: id, inst: inst, addr: addr, conn: old.conn}, nil
	}
	conn, err := grpc.NewClient(addr, p.cfg.dialOptions...)
	if err != nil {
		return nil, fmt.Errorf("grpcsd: pool: new client for %q: %w", addr, err)
	}
	return &poolEntry{key: key, id: id, inst: inst, addr: addr, conn: conn}, nil
}

func event(t PoolEventType, prefix string, e *poolEntry) PoolEvent {
	return PoolEvent{Type: t, Prefix: prefix, Key: e.key, ID: e.id, Instance: e.inst, Conn: e.conn}
}

// lookup returns the state of prefix, or an error naming what is missing.
// The caller holds p.mu.
func (p *Pool) lookup(op, prefix string) (*poolPrefix, error) {
	if p.closed {
		return nil, fmt.Errorf("grpcsd: pool: %s %q: %w", op, prefix, ErrClosed)
	}
	pp := p.prefixes[prefix]
	if pp == nil {
		return nil, fmt.Errorf("grpcsd: pool: %s %q: %w (watched: %s)", op, prefix, ErrNotWatched, quoted(slices.Sorted(maps.Keys(p.prefixes))))
	}
	return pp, nil
}

// Get returns a connection under prefix, in turn (round robin by key).
func (p *Pool) Get(prefix string) (*grpc.ClientConn, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	pp, err := p.lookup("get", prefix)
	if err != nil {
		return nil, err
	}
	if len(pp.sorted) == 0 {
		return nil, fmt.Errorf("grpcsd: pool: get %q: %w: no key under the prefix", prefix, ErrNoConn)
	}
	n := pp.next.Add(1) - 1
	return pp.sorted[n%uint64(len(pp.sorted))].conn, nil
}

// GetByID returns the connection of the key prefix+id (see Pool for what
// an id is).
func (p *Pool) GetByID(prefix, id string) (*grpc.ClientConn, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	pp, err := p.lookup("get by id", prefix)
	if err != nil {
		return nil, err
	}
	e := pp.byID[id]
	if e == nil {
		return nil, fmt.Errorf("grpcsd: pool: get %q under %q: %w (ids: %s)", id, prefix, ErrNoConn, quoted(ids(pp.sorted)))
	}
	return e.conn, nil
}

// GetAll returns the connections under prefix by etcd key. The map is the
// caller's; it fails when there is none.
func (p *Pool) GetAll(prefix string) (map[string]*grpc.ClientConn, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	pp, err := p.lookup("get all", prefix)
	if err != nil {
		return nil, err
	}
	if len(pp.sorted) == 0 {
		return nil, fmt.Errorf("grpcsd: pool: get all %q: %w: no key under the prefix", prefix, ErrNoConn)
	}
	out := make(map[string]*grpc.ClientConn, len(pp.sorted))
	for _, e := range pp.sorted {
		out[e.key] = e.conn
	}
	return out, nil
}

// All returns every connection of the Pool by etcd key. The map is the
// caller's; it fails when there is none.
func (p *Pool) All() (map[string]*grpc.ClientConn, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return nil, fmt.Errorf("grpcsd: pool: all: %w", ErrClosed)
	}
	out := make(map[string]*grpc.ClientConn)
	for _, pp := range p.prefixes {
		for _, e := range pp.sorted {
			out[e.key] = e.conn
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("grpcsd: pool: all: %w: no key under %s", ErrNoConn, quoted(slices.Sorted(maps.Keys(p.prefixes))))
	}
	return out, nil
}

// Close stops watching etcd, waits for the watches to end, and closes every
// connection. Lookups then fail with ErrClosed. It is idempotent.
func (p *Pool) Close() error {
	for _, t := range p.taps {
		t.Close()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var conns []*grpc.ClientConn
	for _, pp := range p.prefixes {
		for _, e := range pp.sorted {
			conns = append(conns, e.conn)
		}
		pp.byID, pp.sorted = nil, nil
	}
	p.mu.Unlock()
	var errs []error
	for _, c := range conns {
		if err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("grpcsd: pool: close %s: %w", c.Target(), err))
		}
	}
	return errors.Join(errs...)
}

// dirOf returns the prefix watched for prefix, by the Pool and by a
// target's resolver: prefix itself when it ends in "/", else the directory
// it names, so that "/backends/agent" does not take in
// "/backends/agent-x/…" or "/backends/agents/…".
func dirOf(prefix string) string {
	if strings.HasSuffix(prefix, "/") {
		return prefix
	}
	return prefix + "/"
}

// keyID returns the id of key under prefix (see Pool).
func keyID(prefix, key string) string {
	id := strings.TrimPrefix(key, prefix)
	if !strings.HasSuffix(prefix, "/") {
		id = strings.TrimPrefix(id, "/")
	}
	return id
}

func ids(entries []*poolEntry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.id
	}
	return out
}

// quoted lists names for an error message, quoted, at most ten.
func quoted(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	const most = 10
	q := make([]string, 0, min(len(names), most)+1)
	for _, n := range names[:min(len(names), most)] {
		q = append(q, fmt.Sprintf("%q", n))
	}
	if len(names) > most {
		q = append(q, fmt.Sprintf("and %d more", len(names)-most))
	}
	return strings.Join(q, ", ")
}
