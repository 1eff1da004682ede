package grpcsd

import (
	"context"
	"fmt"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"google.golang.org/grpc"
)

// DefaultScheme is the resolver scheme of a Builder without WithScheme:
// targets look like "etcd:///services/app/".
const DefaultScheme = "etcd"

// InstancerFactory makes the sd.Instancer a resolver follows for a prefix.
// The resolver owns what it returns: it calls its Stop method, if it has
// one, when the resolver closes. ctx ends when the resolver closes.
type InstancerFactory func(ctx context.Context, prefix string) (sd.Instancer, error)

// Option configures a Builder.
type Option func(*builderConfig)

type builderConfig struct {
	scheme  string
	logger  log.Logger
	factory InstancerFactory
}

// WithScheme sets the scheme the Builder answers to, for targets such as
// "<scheme>:///services/app/". Default DefaultScheme. It must be a valid URL
// scheme in lower case.
func WithScheme(scheme string) Option {
	return func(c *builderConfig) { c.scheme = scheme }
}

// WithLogger sets the logger of the resolvers. Default: no logging.
func WithLogger(logger log.Logger) Option {
	return func(c *builderConfig) { c.logger = logger }
}

// WithInstancerFactory makes the resolvers follow the Instancers made by f
// instead of an etcdv3.Instancer on the Builder's client (which already
// honours the operator's drains and weights): for example the catalog's,
// cat.InstancerForPrefix. A Builder with a factory needs no client.
func WithInstancerFactory(f InstancerFactory) Option {
	return func(c *builderConfig) { c.factory = f }
}

// PoolOption configures a Pool.
type PoolOption func(*poolConfig)

type poolConfig struct {
	dialOptions []grpc.DialOption
	logger      log.Logger
	onChange    func(PoolEvent)
}

// WithDialOptions adds options to every grpc.NewClient call of the Pool,
// typically the transport credentials, which gRPC requires.
func WithDialOptions(opts ...grpc.DialOption) PoolOption {
	return func(c *poolConfig) { c.dialOptions = append(c.dialOptions, opts...) }
}

// WithPoolLogger sets the logger of the Pool. Default: no logging.
func WithPoolLogger(logger log.Logger) PoolOption {
	return func(c *poolConfig) { c.logger = logger }
}

// WithOnChange calls f after each connection is added, replaced or removed.
// It is called from the Pool's watch goroutine, one call at a time per
// prefix, and must not block for long nor call Close.
func WithOnChange(f func(PoolEvent)) PoolOption {
	return func(c *poolConfig) { c.onChange = f }
}

// validScheme reports whether s can be a resolver scheme (RFC 3986, lower
// case, as gRPC lowercases the scheme of targets).
func validScheme(s string) error {
	if s == "" {
		return fmt.Errorf("empty scheme")
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z':
		case i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.'):
		default:
			return fmt.Errorf("scheme %q: want lower-case letters, then letters, digits, '+', '-' or '.'", s)
		}
	}
	return nil
}
