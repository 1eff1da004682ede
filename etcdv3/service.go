package etcdv3

import (
	"fmt"
	"math"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/etcdsd/etcdsd/instance"
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
	// asked holds the values given when they were repaired, so that
	// Register can say so; nil when kept as given.
	asked *TTLOption
}

// MinHeartbeat is the shortest heartbeat NewTTLOption keeps, as in go-kit.
const MinHeartbeat = 500 * time.Millisecond

// NewTTLOption returns a TTLOption. As go-kit's, it repairs values that
// cannot work: a heartbeat of MinHeartbeat or less becomes MinHeartbeat, and
// a ttl not greater than the heartbeat becomes three heartbeats. Register
// logs a warning naming the values given and those used. The ttl is rounded
// up to whole seconds, the unit of etcd leases (never down to 0).
func NewTTLOption(heartbeat, ttl time.Duration) *TTLOption {
	o := &TTLOption{heartbeat: heartbeat, ttl: ttl}
	if o.heartbeat <= MinHeartbeat {
		o.heartbeat = MinHeartbeat
	}
	if o.ttl <= o.heartbeat {
		o.ttl = 3 * o.heartbeat
	}
	if o.heartbeat != heartbeat || o.ttl != ttl {
		o.asked = &TTLOption{heartbeat: heartbeat, ttl: ttl}
	}
	return o
}

// Heartbeat returns the interval between keepalives.
func (o *TTLOption) Heartbeat() time.Duration { return o.heartbeat }

// TTL returns the lease time to live.
func (o *TTLOption) TTL() time.Duration { return o.ttl }

// warnRepaired logs, at warning level, that NewTTLOption repaired the
// values it was given, naming them and the values used.
func (o *TTLOption) warnRepaired(logger log.Logger) {
	if o == nil || o.asked == nil {
		return
	}
	level.Warn(logger).Log("msg", "TTL option repaired as go-kit does",
		"heartbeat_given", o.asked.heartbeat, "ttl_given", o.asked.ttl, "heartbeat", o.heartbeat, "ttl", o.ttl)
}

// leaseSeconds is the TTL in whole seconds, rounded up.
func (o *TTLOption) leaseSeconds() int64 {
	return int64(math.Ceil(o.ttl.Seconds()))
}

// ttlOrDefault returns the service's TTL option or the default one. An
// option NewTTLOption did not make (go-kit accepts &TTLOption{}) is
// repaired as NewTTLOption would, so that no heartbeat is zero or negative.
func (s Service) ttlOrDefault() *TTLOption {
	switch {
	case s.TTL == nil:
		return NewTTLOption(DefaultHeartbeat, DefaultTTL)
	case s.TTL.heartbeat < MinHeartbeat || s.TTL.ttl <= s.TTL.heartbeat:
		return NewTTLOption(s.TTL.heartbeat, s.TTL.ttl)
	}
	return s.TTL
}

// validate checks everything Register needs. As in go-kit, an empty key or
// value gives the bare ErrNoKey or ErrNoValue. The value is checked by the
// parser every consumer uses, so that a value they would leave out is
// refused here, where it is made, rather than logged there.
func (s Service) validate() error {
	if s.Key == "" {
		return ErrNoKey
	}
	if s.Value == "" {
		return ErrNoValue
	}
	if err := ValidateKey(s.Key); err != nil {
		return fmt.Errorf("etcdv3: register %q: %w", s.Key, err)
	}
	if _, err := instance.Parse(s.Value); err != nil {
		return fmt.Errorf("etcdv3: register %q: value: %w", s.Key, err)
	}
	return nil
}
