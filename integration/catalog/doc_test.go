// Package catalog_test tests the catalog package and the etcdsd CLI (the built
// binary) against an embedded etcd.
package catalog_test
