package etcdtest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// leakGrace is how long VerifyTestMain lets goroutines end: an embedded
// cluster member's peer requests in flight when it stops end only at their
// 5 s read deadline (rafthttp.ConnReadTimeout), after the member is closed.
const leakGrace = 10 * time.Second

// etcdLeaks are goroutines that embedded etcd itself leaves behind, not the
// code under test: a member's peer /version handler that was serving when
// the member stopped waits forever for the closed backend's read lock.
// The handler's closure is named after its caller when Go 1.26 inlines
// versionHandler into newPeerHandler, and after versionHandler itself
// under Go 1.27, which does not: both names are that one leak.
var etcdLeaks = []goleak.Option{
	goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/etcdserver/api/etcdhttp.newPeerHandler.versionHandler.func1"),
	goleak.IgnoreAnyFunction("go.etcd.io/etcd/server/v3/etcdserver/api/etcdhttp.versionHandler.func1"),
}

// VerifyTestMain is goleak.VerifyTestMain for packages that run etcd: it
// serves etcd if the binary is a StartProcess child (see RunServerIfChild),
// runs the tests, and then fails the run if goroutines are left once
// leakGrace has passed, rather than goleak's 2 s. Goroutines that embedded
// etcd leaks on its own when a cluster member stops mid-request are not
// counted. Use it as TestMain:
//
//	func TestMain(m *testing.M) { etcdtest.VerifyTestMain(m) }
func VerifyTestMain(m *testing.M, opts ...goleak.Option) {
	RunServerIfChild()
	opts = append(opts, etcdLeaks...)
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(leakGrace)
		for {
			err := goleak.Find(opts...)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "goleak: Errors on successful test run: %v\n", err)
				code = 1
				break
			}
		}
	}
	os.Exit(code)
}
