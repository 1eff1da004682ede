// Package catalog_test tests the catalog package and the etcdsd CLI (the built
// binary) against an embedded etcd, and the README's go-kit Usage against real
// HTTP servers under the CLI's drain, undrain and set-weight.
package catalog_test
