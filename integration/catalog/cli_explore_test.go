package catalog_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/etcdtest"
)

func TestExploreWatchOutage(t *testing.T) {
	d, _ := time.ParseDuration(os.Getenv("OUTAGE"))
	srv := etcdtest.NewServer(t)
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	p := start(t, "watch", "x", ep, "--timeout", os.Getenv("TMO"))
	p.line(t, 5*time.Second, "REVISION")
	t0 := time.Now()
	srv.Stop()
	t.Logf("stopped in %v", time.Since(t0))
	time.Sleep(d)
	srv.Start()
	t.Logf("started at %v", time.Since(t0))
	time.Sleep(8 * time.Second)
	_, rest := p.interrupt(t)
	t.Logf("stdout %q\nstderr %q", rest, p.stderr.String())
}
