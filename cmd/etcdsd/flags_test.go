package main

import (
	"strings"
	"testing"
	"time"
)

// An endpoint that cannot be dialled — a port out of range, no port, an
// unknown scheme — is bad usage, said at once with the value, not a dial
// timeout later.
func TestBadEndpointsAreBadUsageAtOnce(t *testing.T) {
	for _, ep := range []string{"127.0.0.1:99999", "127.0.0.1", "etcd.example", "127.0.0.1:http", "ftp://127.0.0.1:2379", "http://127.0.0.1"} {
		code, _, errOut, took := runCLI(t, "services", "--endpoints", "127.0.0.1:2379,"+ep, "--timeout", "3s")
		if code != 2 || !strings.Contains(errOut, "\""+ep+"\"") {
			t.Errorf("--endpoints %s: exit %d, stderr %q; want exit 2 naming the endpoint", ep, code, errOut)
		}
		if took > time.Second {
			t.Errorf("--endpoints %s: took %v, want at once", ep, took)
		}
	}
}
