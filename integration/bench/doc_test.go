// Package bench compares etcdsd with its peers on one embedded etcd, in one
// run: put → subscriber latency for etcdsd's Instancer, go-kit's sd/etcdv3
// Instancer and a raw clientv3 watch (the floor); and lag, CPU and heap under
// 1,000 changes/s for etcdsd, go-kit's Endpointer and go-zero's discov.
// See docs/benchmarks.md.
package bench
