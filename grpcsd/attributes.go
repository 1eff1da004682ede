package grpcsd

import (
	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"

	"github.com/etcdsd/etcdsd/instance"
)

// instanceKey is the attribute key under which the resolver stores the
// parsed instance: in Endpoint.Attributes, and in BalancerAttributes of the
// entries of State.Addresses. Both are meant for load balancing policies and
// leave SubConns alone; Address.Attributes would not: gRPC tells SubConns
// apart by them, so a change of weight or metadata would reconnect.
type instanceKey struct{}

// instanceValue wraps an instance so that gRPC can compare attributes: an
// instance.Instance holds a map and cannot be compared with ==.
type instanceValue struct{ inst instance.Instance }

// Equal reports whether o holds the same instance; gRPC calls it to tell
// whether an address changed.
func (v instanceValue) Equal(o any) bool {
	ov, ok := o.(instanceValue)
	return ok && v.inst.Equal(ov.inst)
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

// InstanceFromEndpoint returns the instance the resolver of this package
// attached to ep: its id, name, version, address, metadata and weight as
// registered in etcd. ok is false for an endpoint from another resolver.
// The Metadata map is shared: do not modify it.
func InstanceFromEndpoint(ep resolver.Endpoint) (inst instance.Instance, ok bool) {
	return instanceFrom(ep.Attributes)
}

// InstanceFromAddress is InstanceFromEndpoint for an entry of
// resolver.State.Addresses, the list that balancers built on grpc-go's
// balancer/base read (from its BalancerAttributes). Addresses inside
// endpoints carry no instance: read it from the endpoint.
func InstanceFromAddress(addr resolver.Address) (inst instance.Instance, ok bool) {
	//lint:ignore SA1019 deprecated only for addresses inside an Endpoint; State.Addresses entries are not.
	return instanceFrom(addr.BalancerAttributes)
}
