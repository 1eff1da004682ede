package grpcsd

import (
	"context"

	"google.golang.org/grpc/metadata"
)

// MetadataKey is the gRPC metadata key that carries the wanted version
// across processes. A server that wants its own calls to follow the version
// of the request it serves copies it from the incoming metadata into the
// outgoing one (or into WithVersion). WithVersion takes precedence over it.
const MetadataKey = "x-etcdsd-version"

// versionKey is the context key of WithVersion.
type versionKey struct{}

// WithVersion returns a context whose RPCs are routed by the version
// balancer to instances whose version is v. An empty v means any version.
func WithVersion(ctx context.Context, v string) context.Context {
	return context.WithValue(ctx, versionKey{}, v)
}

// VersionFromContext returns the version an RPC made with ctx asks for: the
// one set by WithVersion, else the first non-empty value of MetadataKey in
// the outgoing gRPC metadata. ok is false when neither is set.
//
// The WithVersion path costs no allocation. The metadata path costs one copy
// of the outgoing metadata, because grpc-go v1.83 offers no read-only
// accessor for it.
func VersionFromContext(ctx context.Context) (v string, ok bool) {
	if v, ok := ctx.Value(versionKey{}).(string); ok {
		return v, v != ""
	}
	md, ok := metadata.FromOutgoingContext(ctx)
	if !ok {
		return "", false
	}
	for _, v := range md[MetadataKey] {
		if v != "" {
			return v, true
		}
	}
	return "", false
}
