// Package endpointer turns a go-kit sd.Instancer into one endpoint.Endpoint
// that balances, routes by version and metadata, and retries on another
// instance with backoff — with picks that cost tens of nanoseconds and no
// allocation.
//
// New subscribes to an Instancer (etcdv3.Instancer, or any sd.Instancer),
// parses each instance value with instance.Parse, builds one endpoint per
// instance address with an sd.Factory and keeps the candidate groups of
// every version and metadata pair up to date, one change at a time (about
// O(sqrt n) per change; fed by etcdv3.Instancer it applies the pipeline's
// keyed changes, with any other Instancer the difference between events),
// so that a pick is an index lookup and an atomic add. Strategies are
// round robin (default), random, power of two choices on in-flight requests
// (LeastLoaded) and weighted by the instance value's weight.
//
// A request is routed by a selector in its context:
//
//	ctx = endpointer.WithVersion(ctx, "v2")
//	ctx = endpointer.WithMetadata(ctx, "zone", "a")
//
// Only instances whose value carries that version and metadata are
// candidates; with no selector every instance is. When none matches, the
// error wraps ErrNoMatch and names the wanted selector and the versions
// available. A plain-address value has no version and no metadata: it serves
// requests without a selector (or with WithVersion(ctx, "")), never a request
// that asks for a version.
//
// WithSubset limits a client to a few instances per version chosen by
// rendezvous hashing, so that many clients spread evenly over many servers
// without a full mesh of connections, and a change of the instance set moves
// as few clients as possible.
//
// The factory receives the instance's address (instance.Instance.Address),
// not the whole value: for a plain value they are the same string, as in
// go-kit; for a JSON value it is the "address" field. Endpoints are cached by
// address, so a change of version, metadata or weight in a value, or an
// operator's weight override (which etcdv3's and catalog's Instancers pass
// as the typed weight, leaving the value alone), re-routes on the next
// event without reconnecting, and an endpoint's io.Closer is
// closed once no instance has its address any more and its in-flight calls
// have returned.
//
// An instance whose endpoint fails five times in a row is ejected: picks
// skip it for 30 s times the number of its ejections (at most 300 s), as
// Envoy's outlier detection does, while never more than half of the
// addresses are ejected at once; a request whose candidates are all
// ejected still reaches one. WithEjection tunes this, WithEjectOn decides
// which errors are failures, WithEjectionHook reports each ejection, and
// WithoutEjection turns it off. WithInstanceMiddleware wraps each
// instance's endpoint once, for per-instance state such as go-kit's
// circuitbreaker.Gobreaker.
//
// An Endpointer is also a go-kit sd.Endpointer, so it mixes with go-kit's lb
// package (which does not skip ejected instances). Close stops it and
// closes every endpoint.
package endpointer
