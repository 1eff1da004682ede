// Package grpcsd tests the gRPC resolver, version balancer and Pool end to end
// against real gRPC servers registered in an embedded etcd.
package grpcsd
