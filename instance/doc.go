// Package instance is the instance value format of etcdsd: what a service
// puts under its key and every consumer reads. A value is a plain address
// ("10.0.0.1:9000", "http://10.0.0.1:8080") or a JSON object carrying id,
// name, version, address, metadata and weight:
//
//	{"id":"app-1","name":"app","version":"v2","address":"10.0.0.1:9000",
//	 "metadata":{"zone":"a"},"weight":10}
//
// Parse reads both and names what is wrong with a malformed value, so that
// callers can skip it and keep the other instances; Encode writes the JSON
// form. etcdsd parses each value once, when it arrives from etcd, with
// Parse, and every consumer (Instancer, endpointer, gRPC resolver and pool,
// catalog) sees the same result. AddressFactory lets a go-kit sd.Factory
// that expects an address ("host:port") serve JSON values too.
package instance
