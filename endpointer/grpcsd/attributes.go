package grpcsd

import (
	"maps"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"

	"github.com/etcdsd/etcdsd/instance"
)

// instanceKey is the attribute key under which the resolver stores the
// parsed instance, in Address.Attributes and in Endpoint.Attributes.
type instanceKey struct{}

// instanceValue wraps an instance so that gRPC can compare attributes: an
// instance.Instance holds a map and cannot be compared with ==.
type instanceValue struct{ inst instance.Instance }

// Equal reports whether o holds the same instance; gRPC calls it to tell
// whether an address changed.
func (v instanceValue) Equal(o any) bool {
	ov, ok := o.(instanceValue)
	if !ok {
		return false
	}
	a, b := v.inst, ov.inst
	return a.ID == b.ID && a.Name == b.Name && a.Version == b.Version &&
		a.Address == b.Address && a.Weight == b.Weight && maps.Equal(a.Metadata, b.Metadata)
}

// String keeps gRPC's channelz and log output readable.
func (v instanceValue) String() string {
	return "instance{id=" + v.inst.ID + " version=" + v.inst.Version + " address=" + v.inst.Address + "}"
}

func instanceAttributes(inst instance.Instance) *attributes.Attributes {
	return attributes.New(instanceKey{}, instanceValue{inst: inst})
}

func instanceFrom(a *attributes.Attributes) (instance.Instance, bool) {
	v, ok := a.Value(instanceKey{}).(instanceValue)
	return v.inst, ok
}

// InstanceFromAddress returns the instance the resolver of this package
// attached to addr: its id, name, version, address, metadata and weight as
// registered in etcd. ok is false for an address from another resolver.
// The Metadata map is shared: do not modify it.
func InstanceFromAddress(addr resolver.Address) (inst instance.Instance, ok bool) {
	return instanceFrom(addr.Attributes)
}

// InstanceFromEndpoint is InstanceFromAddress for an endpoint, which is what
// load balancing policies see.
func InstanceFromEndpoint(ep resolver.Endpoint) (inst instance.Instance, ok bool) {
	return instanceFrom(ep.Attributes)
}
