// Package outage tests that no call blocks without bound while etcd is
// unreachable, and that a key deregistered during an outage never comes
// back: each call is made with the embedded etcd stopped.
package outage
