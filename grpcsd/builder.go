package grpcsd

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"google.golang.org/grpc/resolver"

	"github.com/etcdsd/etcdsd/etcdv3"
)

// Builder is a gRPC resolver.Builder for targets such as
// "etcd:///services/app/": each ClientConn built on it follows the instances
// under the target's path ("/services/app/") through one Instancer on the
// Builder's shared etcd client. A path without a trailing slash is taken as
// the directory it names: "etcd:///services/app" follows "/services/app/",
// never "/services/apple/" or "/services/app-canary/". Pass it to
// grpc.NewClient with grpc.WithResolvers, or register it for the whole
// process with Register.
type Builder struct {
	cfg builderConfig
}

var _ resolver.Builder = (*Builder)(nil)

// NewBuilder returns a Builder on the shared client c, which must outlive
// the ClientConns built on it. c may be nil only with WithInstancerFactory.
// It fails for a nil client without factory and for an invalid scheme.
func NewBuilder(c etcdv3.Client, opts ...Option) (*Builder, error) {
	cfg := builderConfig{scheme: DefaultScheme}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = log.NewNopLogger()
	}
	if err := validScheme(cfg.scheme); err != nil {
		return nil, fmt.Errorf("grpcsd: new builder: %w", err)
	}
	if cfg.factory == nil {
		if c == nil {
			return nil, errors.New("grpcsd: new builder: nil etcd client and no instancer factory")
		}
		logger := cfg.logger
		cfg.factory = func(ctx context.Context, prefix string) (sd.Instancer, error) {
			return etcdv3.NewInstancerContext(ctx, c, prefix, logger)
		}
	}
	return &Builder{cfg: cfg}, nil
}

// Scheme implements resolver.Builder.
func (b *Builder) Scheme() string { return b.cfg.scheme }

// Build implements resolver.Builder. It fails only for a target that names
// no valid prefix or names an authority (etcd endpoints come from the
// Builder's client, not from the target). It does not wait for etcd: the
// resolver connects in the background, reports errors to the ClientConn
// until it succeeds, and follows the prefix until Close.
func (b *Builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	prefix, err := targetPrefix(target)
	if err != nil {
		return nil, fmt.Errorf("grpcsd: build %q: %w", target.URL.String(), err)
	}
	return startResolver(prefix, cc, b.cfg.factory, log.With(b.cfg.logger, "prefix", prefix)), nil
}

// Register registers b with gRPC for the whole process, so that
// grpc.NewClient resolves b's scheme without grpc.WithResolvers. Like
// resolver.Register, call it at initialisation time only; a later Register
// of the same scheme replaces b.
func Register(b *Builder) {
	resolver.Register(b)
}

// targetPrefix returns the etcd prefix a target names: its path, leading
// slash kept, with a trailing slash added when it has none
// ("etcd:///services/app" → "/services/app/"). A prefix names a directory:
// without its slash, "/services/app" would also follow the keys of
// "/services/apple/" and "/services/app-canary/".
func targetPrefix(t resolver.Target) (string, error) {
	if t.URL.Host != "" {
		return "", fmt.Errorf("authority %q not supported: write the target as %s:///<prefix>", t.URL.Host, t.URL.Scheme)
	}
	prefix := t.URL.Path
	if prefix == "" {
		prefix = t.URL.Opaque
	}
	if prefix == "/" {
		return "", errors.New(`no prefix: "/" would follow the whole keyspace`)
	}
	// Checked before the slash is added, which would hide trailing white
	// space from the check.
	if err := etcdv3.ValidatePrefix(prefix); err != nil {
		return "", fmt.Errorf("prefix %q: %w", prefix, err)
	}
	return dirOf(prefix), nil
}
