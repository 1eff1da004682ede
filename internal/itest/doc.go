// Package itest holds the helpers that the integration test packages share:
// a go-kit logger writing to the test log, an etcdv3 client closed at
// cleanup, polling with a deadline, and direct reads of etcd.
//
// It is for tests only: every helper takes a testing.TB and fails it on error.
package itest
