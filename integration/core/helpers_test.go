package core

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newInstancer starts an Instancer stopped at cleanup.
func newInstancer(t testing.TB, c etcdv3.Client, prefix string) *etcdv3.Instancer {
	t.Helper()
	in, err := etcdv3.NewInstancer(c, prefix, itest.Logger(t))
	if err != nil {
		t.Fatalf("new instancer %q: %v", prefix, err)
	}
	t.Cleanup(in.Stop)
	return in
}
