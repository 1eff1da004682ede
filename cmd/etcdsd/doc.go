// Command etcdsd is the etcdsd command-line tool: a self-contained demo of
// service discovery on an embedded etcd, and operator commands to list,
// watch, register and drain service instances in a running etcd.
//
//	etcdsd demo                 the whole job on an embedded etcd, narrated
//	etcdsd demo grpc            only the gRPC version-routing part
//	etcdsd services             every service with its number of instances
//	etcdsd list <name|prefix*>  instances with version, weight and state
//	etcdsd watch [name|prefix*] typed instance and property events, live
//	etcdsd register --key K --value V [--ttl 9s]
//	etcdsd drain|undrain <name> <id>
//	etcdsd drain|undrain --all <name>
//	etcdsd set-weight <name> <id> (<weight> | --clear)
//	etcdsd console [--allow-writes] a live web console on 127.0.0.1:8090
//	etcdsd demo --console       the demo with the console open
//	etcdsd --version            the module version, or devel and the commit
//
// Common flags, before or after the command (given on both sides, the one
// after wins): --endpoints (default $ETCD_ENDPOINTS or 127.0.0.1:2379),
// --cacert/--cert/--key, --user/--password, --timeout, -o table|json.
// Errors are one line on stderr. Exit codes: 0 success, 1 failure, 2 bad
// usage.
package main
