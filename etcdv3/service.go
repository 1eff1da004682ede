package etcdv3

import (
	"fmt"
	"math"
	"time"
)

// Default lease timing, as in go-kit: the key lives 9 s without a heartbeat,
// and a heartbeat is sent every 3 s.
const (
	DefaultHeartbeat = 3 * time.Second
	DefaultTTL       = 9 * time.Second
)

// Service holds the instance identifying data you want to publish to etcd. Key
// must be unique, and value is the string returned to subscribers, typically
// called the "instance" string in other parts of package sd.
type Service struct {
	Key   string // unique key, e.g. "/service/foobar/1.2.3.4:8080"
	Value string // returned to subscribers, e.g. "http://1.2.3.4:8080"
	TTL   *TTLOption
}

// TTLOption sets the lease of a registration: the key disappears ttl after
// the last successful heartbeat, and heartbeats are sent every heartbeat.
type TTLOption struct {
	heartbeat time.Duration
	ttl       time.Duration
}

// NewTTLOption returns a TTLOption. Unlike go-kit's, it does not silently
// change bad values: a heartbeat <= 0 or a ttl <= heartbeat makes Register
// fail with an error naming both values. The ttl is rounded up to whole
// seconds, the unit of etcd leases (never down to 0).
func NewTTLOption(heartbeat, ttl time.Duration) *TTLOption {
	return &TTLOption{heartbeat: heartbeat, ttl: ttl}
}

// Heartbeat returns the interval between keepalives.
func (o *TTLOption) Heartbeat() time.Duration { return o.heartbeat }

// TTL returns the lease time to live.
func (o *TTLOption) TTL() time.Duration { return o.ttl }

// Validate reports whether the option can be used.
func (o *TTLOption) Validate() error {
	if err := o.check(); err != nil {
		return fmt.Errorf("etcdv3: TTL option: %w", err)
	}
	return nil
}

func (o *TTLOption) check() error {
	if o.heartbeat <= 0 {
		return fmt.Errorf("heartbeat %v must be positive", o.heartbeat)
	}
	if o.ttl <= o.heartbeat {
		return fmt.Errorf("TTL %v must be greater than heartbeat %v", o.ttl, o.heartbeat)
	}
	return nil
}

// leaseSeconds is the TTL in whole seconds, rounded up.
func (o *TTLOption) leaseSeconds() int64 {
	return int64(math.Ceil(o.ttl.Seconds()))
}

// ttlOrDefault returns the service's TTL option or the default one.
func (s Service) ttlOrDefault() *TTLOption {
	if s.TTL == nil {
		return NewTTLOption(DefaultHeartbeat, DefaultTTL)
	}
	return s.TTL
}

// validate checks everything Register needs.
func (s Service) validate() error {
	if err := ValidateKey(s.Key); err != nil {
		return fmt.Errorf("etcdv3: register %q: %w", s.Key, err)
	}
	if s.Value == "" {
		return fmt.Errorf("etcdv3: register %q: %w", s.Key, ErrNoValue)
	}
	if err := s.ttlOrDefault().check(); err != nil {
		return fmt.Errorf("etcdv3: register %q: %w", s.Key, err)
	}
	return nil
}
