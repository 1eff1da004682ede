package bench

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// goKitRan is set by benchmarks that use go-kit's sd/etcdv3 client, which
// has no Close and so leaves its gRPC connection's goroutines behind.
var goKitRan bool

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if goKitRan {
			fmt.Fprintln(os.Stderr, "bench: goroutine leak check skipped: go-kit's etcdv3 client cannot be closed")
		} else if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}
