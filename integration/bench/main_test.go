package bench

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/etcdsd/etcdsd/etcdtest"
)

// goKitRan is set by benchmarks that use go-kit's sd/etcdv3 client, which
// has no Close and so leaves its gRPC connection's goroutines behind.
var goKitRan bool

// goZeroRan is set by benchmarks that use go-zero's discov, which keeps its
// etcd clients in a process-wide registry that nothing closes.
var goZeroRan bool

// TestMain serves etcd when the binary is a child of etcdtest.StartProcess
// (BenchmarkFleet's etcd), and otherwise runs the tests and checks with
// goleak that nothing is left.
func TestMain(m *testing.M) {
	etcdtest.RunServerIfChild()
	code := m.Run()
	if code == 0 {
		switch {
		case goKitRan:
			fmt.Fprintln(os.Stderr, "bench: goroutine leak check skipped: go-kit's etcdv3 client cannot be closed")
		case goZeroRan:
			fmt.Fprintln(os.Stderr, "bench: goroutine leak check skipped: go-zero's discov keeps its etcd clients open")
		default:
			// go-zero's proc package starts a signal handler at init, in
			// every run of this binary whether go-zero is used or not.
			if err := goleak.Find(goleak.IgnoreTopFunction("github.com/zeromicro/go-zero/core/proc.init.1.func1")); err != nil {
				fmt.Fprintln(os.Stderr, err)
				code = 1
			}
		}
	}
	os.Exit(code)
}
