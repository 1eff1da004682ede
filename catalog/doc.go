// Package catalog is the typed service catalog on etcd: register typed
// instances, list services, watch typed events with revisions, and let an
// operator drain or re-weight any instance live from outside its process.
//
// Key layout (roots configurable with WithRoot and WithPropertiesRoot):
//
//	/services/<service>/<id>                              instance, JSON value of package instance
//	/etcdsd/properties/services/<service>/<id>/<name>     property of one instance, JSON value
//	/etcdsd/properties/services/<service>/_/<name>        property of every instance of the service
//
// The properties of the instances under a prefix P live under the
// properties root (without its final "/") followed by P, which is where
// etcdv3.NewInstancer of P reads them too: a drain set here takes effect in
// a go-kit program that watches /services/<service>/ with etcdv3 alone. The
// properties root is set once, in etcdv3.ClientOptions.PropertiesRoot; New
// takes it from the client (WithPropertiesRoot overrides it).
//
// Services write instances through Register, which builds on
// etcdv3.Registrar: shared leases, heartbeats and re-registration after a
// lease loss are inherited, and the Registration can Pause, Resume and
// Drain. Operators write properties (PropDisabled, PropWeight) with
// SetProperty, or with the etcdsd CLI (drain, undrain, set-weight).
//
// Readers use GetService and ListServices (keys only, paged) once, then
// Watch for typed events, or NewInstancer for a go-kit sd.Instancer of one
// service that leaves out disabled instances and applies weight overrides
// to the typed weight (never to the value a go-kit factory receives): every
// endpointer and balancer built on an sd.Instancer honours the operator's
// properties through it, within one watch event, and a gRPC resolver does
// with grpcsd.WithInstancerFactory(cat.InstancerForPrefix).
//
// The runnable examples that start a real (embedded) etcd are in the
// repository's integration module: integration/examples/catalog.
package catalog
