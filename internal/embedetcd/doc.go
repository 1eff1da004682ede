// Package embedetcd runs an etcd member inside the process, tuned for
// loopback: etcdtest's servers, clusters and child processes and the
// CLI's demo all start their etcd through its Member.
//
// Its errors name the operation, member, ports and cause but carry no
// package prefix, so that callers prefix their own:
//
//	if err := m.Launch(1); err != nil {
//		return fmt.Errorf("etcdtest: %w", err)
//	}
package embedetcd
