package catalog

import (
	"context"
	"fmt"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/pipeline"
	"github.com/etcdsd/etcdsd/internal/property"
)

// Instance is a typed service instance, stored as the JSON value of
// package instance.
type Instance = instance.Instance

// Catalog reads and writes services, instances and properties in one etcd
// under one key layout. It is safe for concurrent use; it owns no
// goroutine itself (Registrations, Watches and Instancers own theirs).
type Catalog struct {
	client *etcdv3.EtcdClient
	layout layout
	logger log.Logger
	ttl    *etcdv3.TTLOption
}

// Option configures a Catalog.
type Option func(*config)

type config struct {
	root, propsRoot string
	logger          log.Logger
	heartbeat, ttl  time.Duration // as given to WithTTL
}

// WithRoot sets the prefix under which instances live, ending with "/".
// Default DefaultRoot.
func WithRoot(root string) Option { return func(c *config) { c.root = root } }

// WithPropertiesRoot sets the prefix under which properties live, ending
// with "/"; it must not contain, or sit under, the instances root. Default:
// the client's etcdv3.ClientOptions.PropertiesRoot, so that the catalog
// writes properties where the client's etcdv3 Instancers read them, or
// DefaultPropertiesRoot when it is unset or "-" (the catalog's own
// Instancer then still honours properties there).
func WithPropertiesRoot(root string) Option { return func(c *config) { c.propsRoot = root } }

// WithLogger sets the logger of the catalog and of what it starts. Default:
// no logging.
func WithLogger(l log.Logger) Option { return func(c *config) { c.logger = l } }

// WithTTL sets the lease of registrations. Default etcdv3.DefaultHeartbeat
// and etcdv3.DefaultTTL (3 s, 9 s). Values etcdv3.NewTTLOption repairs are
// repaired the same way, with a warning naming them.
func WithTTL(heartbeat, ttl time.Duration) Option {
	return func(c *config) { c.heartbeat, c.ttl = heartbeat, ttl }
}

// New returns a Catalog over client, which must be one etcdv3.NewClient
// returned: the catalog reads and writes etcd through it. It fails for
// another or a nil client, and roots that are not valid prefixes ending
// with "/" or that contain each other.
func New(c etcdv3.Client, opts ...Option) (*Catalog, error) {
	client, ok := c.(*etcdv3.EtcdClient)
	if !ok || client == nil {
		return nil, fmt.Errorf("catalog: new: client %T: want the *etcdv3.EtcdClient of etcdv3.NewClient", c)
	}
	cfg := config{root: DefaultRoot, propsRoot: DefaultPropertiesRoot, logger: log.NewNopLogger()}
	if root, on := property.Resolve(property.ClientRoot(client)); on {
		cfg.propsRoot = root
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = log.NewNopLogger()
	}
	l, err := newLayout(cfg.root, cfg.propsRoot)
	if err != nil {
		return nil, fmt.Errorf("catalog: new: %w", err)
	}
	if cfg.heartbeat == 0 && cfg.ttl == 0 {
		cfg.heartbeat, cfg.ttl = etcdv3.DefaultHeartbeat, etcdv3.DefaultTTL
	}
	ttl := etcdv3.NewTTLOption(cfg.heartbeat, cfg.ttl)
	if ttl.Heartbeat() != cfg.heartbeat || ttl.TTL() != cfg.ttl {
		level.Warn(cfg.logger).Log("msg", "TTL option repaired as go-kit does", "heartbeat_given", cfg.heartbeat, "ttl_given", cfg.ttl, "heartbeat", ttl.Heartbeat(), "ttl", ttl.TTL())
	}
	return &Catalog{client: client, layout: l, logger: cfg.logger, ttl: ttl}, nil
}

// Root returns the prefix under which instances live.
func (c *Catalog) Root() string { return c.layout.root }

// PropertiesRoot returns the prefix under which properties live.
func (c *Catalog) PropertiesRoot() string { return c.layout.propsRoot }

// InstanceKey returns the key of an instance: <root><service>/<id>.
func (c *Catalog) InstanceKey(service, id string) string { return c.layout.instanceKey(service, id) }

// decodeInstance reads an instance from its key and value. The key is the
// truth about identity: Name and ID are those of the key, whatever the
// value says. A plain value (go-kit style) gives an Instance with only
// the address.
func (l layout) decodeInstance(key, value string) (Instance, error) {
	service, id, ok := l.parseInstanceKey(key)
	if !ok {
		return Instance{}, fmt.Errorf("%w: key %q is not <root><service>/<id>", instance.ErrMalformed, shorten(key))
	}
	inst, err := instance.Parse(value)
	if err != nil {
		return Instance{}, fmt.Errorf("key %q: %w", shorten(key), err)
	}
	inst.Name, inst.ID = service, id
	return inst, nil
}

// mirror has a new Feed of prefix, whose values are instances or
// properties of the catalog's layout, decoded once by the Feed, follow the
// client's shared Mirror of prefix; etcd is read within ctx unless the
// client follows prefix already. Close the Tap when done.
func (c *Catalog) mirror(ctx context.Context, prefix string, kind Kind, opts ...pipeline.FeedOption) (*pipeline.Tap, error) {
	parse := c.layout.decodeInstance
	if kind == KindProperty {
		parse = func(key, value string) (Instance, error) {
			_, err := c.layout.decodeProperty(key, value)
			return Instance{}, err
		}
	}
	logger := log.With(c.logger, "prefix", prefix)
	opts = append([]pipeline.FeedOption{pipeline.WithParser(parse), pipeline.WithLogger(logger)}, opts...)
	return c.follow(ctx, prefix, logger, pipeline.NewFeed(opts...))
}

// follow has feed follow the client's shared Mirror of prefix, failing
// when etcd cannot be read within ctx.
func (c *Catalog) follow(ctx context.Context, prefix string, logger log.Logger, feed *pipeline.Feed) (*pipeline.Tap, error) {
	tap, err := pipeline.Share(ctx, pipeline.ShareKey{Client: c.client, Prefix: prefix}, pipeline.ShareOptions{
		Source:   func(log.Logger) pipeline.Source { return pipeline.SourceFor(c.client, prefix) },
		FailFast: true,
		Logger:   logger,
	})
	if err != nil {
		return nil, err
	}
	tap.Follow(feed)
	return tap, nil
}
