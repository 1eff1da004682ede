// Package instance mirrors a set of service instances and fans it out to
// go-kit subscribers: a Cache keyed by etcd key, kept sorted and free of
// duplicates, that sends one coalesced sd.Event per change to every
// registered channel without ever letting a slow reader hold up the rest.
//
// It also parses instance values: a plain address ("10.0.0.1:9000",
// "http://10.0.0.1:8080") or a JSON object carrying id, name, version,
// address, metadata and weight. A malformed value is reported as an error so
// that callers can skip it and keep the other instances.
//
// The package knows nothing about etcd; package etcdv3 feeds it.
package instance
