package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/internal/itest"
)

func TestRegisterRefusesAValueConsumersCannotParse(t *testing.T) {
	e, err := startEmbeddedEtcd()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// Were the value registered, the command would wait for this context.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out, errOut itest.Buffer
	code := run(ctx, []string{"register", "--endpoints", e.Endpoint(), "--key", "/services/app/a", "--value", "{bad json"}, &out, &errOut)
	if code == 0 || strings.Contains(out.String(), "registered") || !strings.Contains(errOut.String(), `"{bad json"`) {
		t.Fatalf("exit %d, stdout %q, stderr %q; want a failure naming the value", code, out.String(), errOut.String())
	}
}
