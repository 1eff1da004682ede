package promsd_test

import (
	"testing"

	"github.com/etcdsd/etcdsd/etcdtest"
)

func TestMain(m *testing.M) {
	etcdtest.VerifyTestMain(m)
}
