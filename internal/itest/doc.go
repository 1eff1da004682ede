// Package itest holds the helpers that the integration test packages share:
// a go-kit logger writing to the test log, polling with a deadline, a
// recorder of sd.Events, and direct reads of etcd. It imports no package of
// etcdsd, so that every test package can use it; itestclient adds an
// etcdv3 client.
//
// It is for tests only: every helper takes a testing.TB and fails it on error.
package itest
