// Package bench compares etcdsd with its peers on one embedded etcd, in one
// run: put → subscriber latency for etcdsd's Instancer, go-kit's sd/etcdv3
// Instancer and a raw clientv3 watch (the floor). See docs/benchmarks.md.
package bench
