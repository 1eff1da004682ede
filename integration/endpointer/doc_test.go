// Package endpointer tests the endpointer package end to end: real go-kit
// HTTP services registered in an embedded etcd, balanced, routed and failed over.
package endpointer
