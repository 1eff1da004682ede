package console

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Bounds of lease reads: a service page refreshes its TTLs every
// leaseRefresh; a lease read less than leaseFresh ago is not read again;
// one refresh reads at most maxLeaseReads leases (registrations of one
// client share a lease, so a service has few) and the lease ids of at most
// maxLeaseKeys keys.
const (
	leaseRefresh  = 2 * time.Second
	leaseFresh    = time.Second
	maxLeaseReads = 64
	maxLeaseKeys  = 10000
)

// LeaseInfo is the lease of one instance's key as etcd's TimeToLive
// reports it.
type LeaseInfo struct {
	// ID is the lease id in hex, as etcdctl shows it; empty when the key
	// has no lease (put by hand: it never expires).
	ID string `json:"id,omitempty"`
	// TTL is the seconds left, -1 when the lease has expired; Granted the
	// TTL it was granted with.
	TTL     int64 `json:"ttl"`
	Granted int64 `json:"granted,omitempty"`
	// Age is how many milliseconds ago TTL was read.
	Age   int64  `json:"age"`
	Error string `json:"error,omitempty"`
}

// Leases are the leases of a service's instances, by instance id.
type Leases struct {
	Service string               `json:"service"`
	Leases  map[string]LeaseInfo `json:"leases"`
	// Error says why the leases could not be read.
	Error string `json:"error,omitempty"`
}

// leases finds the lease of each instance's key and reads its TTL, with a
// cache shared by every page: a key's lease can only change when the key is
// put, so its lease id is read again only when the watch reports a new
// revision of the key.
type leases struct {
	cli     *clientv3.Client
	timeout time.Duration

	refresh sync.Mutex // one refresh at a time; others wait and reuse it
	mu      sync.Mutex
	byKey   map[string]keyLease
	ttls    map[clientv3.LeaseID]leaseTTL
}

type keyLease struct {
	rev   int64
	lease clientv3.LeaseID
}

type leaseTTL struct {
	ttl, granted int64
	at           time.Time
	err          string
}

func newLeases(cli *clientv3.Client, timeout time.Duration) *leases {
	return &leases{cli: cli, timeout: timeout, byKey: make(map[string]keyLease), ttls: make(map[clientv3.LeaseID]leaseTTL)}
}

// read returns the leases of the instances under prefix, whose keys are
// prefix+id and whose revisions revs gives by id.
func (l *leases) read(ctx context.Context, service, prefix string, revs map[string]int64) (Leases, error) {
	l.refresh.Lock()
	defer l.refresh.Unlock()
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	stale := false
	l.mu.Lock()
	for id, rev := range revs {
		if kl, ok := l.byKey[prefix+id]; !ok || kl.rev < rev {
			stale = true
		}
	}
	l.mu.Unlock()
	if stale {
		if err := l.readIDs(ctx, prefix); err != nil {
			return Leases{}, err
		}
	}
	out := Leases{Service: service, Leases: make(map[string]LeaseInfo, len(revs))}
	reads := 0
	now := time.Now()
	for id := range revs {
		l.mu.Lock()
		kl, ok := l.byKey[prefix+id]
		t, known := l.ttls[kl.lease]
		l.mu.Unlock()
		switch {
		case !ok:
			continue // beyond maxLeaseKeys, or deleted meanwhile
		case kl.lease == clientv3.NoLease:
			out.Leases[id] = LeaseInfo{TTL: -1}
			continue
		case (!known || now.Sub(t.at) >= leaseFresh) && reads < maxLeaseReads:
			reads++
			t = l.readTTL(ctx, kl.lease)
		}
		info := LeaseInfo{ID: fmt.Sprintf("%016x", int64(kl.lease)), TTL: t.ttl, Granted: t.granted, Age: time.Since(t.at).Milliseconds(), Error: t.err}
		if t.at.IsZero() {
			info.Age = 0
		}
		out.Leases[id] = info
	}
	return out, nil
}

// readIDs reads the lease of every key under prefix, and forgets the keys
// under prefix that are gone. It reads values too: etcd 3.7 answers a
// keys-only range from its index, without the keys' leases.
func (l *leases) readIDs(ctx context.Context, prefix string) error {
	resp, err := l.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithLimit(maxLeaseKeys))
	if err != nil {
		return fmt.Errorf("console: read the leases of the keys under %q: %w", prefix, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.byKey {
		if strings.HasPrefix(k, prefix) {
			delete(l.byKey, k)
		}
	}
	inUse := make(map[clientv3.LeaseID]bool)
	for _, kv := range resp.Kvs {
		l.byKey[string(kv.Key)] = keyLease{rev: kv.ModRevision, lease: clientv3.LeaseID(kv.Lease)}
	}
	for _, kl := range l.byKey {
		inUse[kl.lease] = true
	}
	for id := range l.ttls {
		if !inUse[id] {
			delete(l.ttls, id)
		}
	}
	return nil
}

// readTTL reads one lease's TTL and caches it.
func (l *leases) readTTL(ctx context.Context, id clientv3.LeaseID) leaseTTL {
	t := leaseTTL{at: time.Now()}
	resp, err := l.cli.TimeToLive(ctx, id)
	if err != nil {
		t.ttl, t.err = -1, fmt.Sprintf("read lease %016x: %v", int64(id), err)
	} else {
		t.ttl, t.granted = resp.TTL, resp.GrantedTTL
	}
	l.mu.Lock()
	l.ttls[id] = t
	l.mu.Unlock()
	return t
}
