package history

import (
	"testing"

	"github.com/etcdsd/etcdsd/etcdtest"
)

// TestMain serves etcd when the binary is a child of etcdtest.StartProcess,
// and otherwise runs the tests and checks with goleak that nothing is left.
func TestMain(m *testing.M) { etcdtest.VerifyTestMain(m) }
