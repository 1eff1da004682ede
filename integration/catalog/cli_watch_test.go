package catalog_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// The report: watch printed that it was failing during an etcd
// outage, then nothing when etcd came back. Now an outage longer than
// --timeout prints one line when it starts and one when the watch resumes,
// with the revision it resumed from; -o json prints both as objects among
// the changes.
func TestCLIWatchPrintsOutageAndRecoveryWithTheRevisionResumedFrom(t *testing.T) {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("needs an embedded etcd to stop and start")
	}
	raw := srv.Client(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	key := cat.InstanceKey("out", "a")
	put(t, raw, key, "10.0.0.1:80")

	text := start(t, "watch", "out", "--timeout", "1s", ep)
	js := start(t, "watch", "out", "-o", "json", "--timeout", "1s", ep)
	text.line(t, 5*time.Second, "10.0.0.1:80")
	js.line(t, 5*time.Second, "10.0.0.1:80")
	last := put(t, raw, key, "10.0.0.2:80")
	text.line(t, 5*time.Second, "10.0.0.2:80")
	js.line(t, 5*time.Second, "10.0.0.2:80")

	srv.Stop()
	outage := regexp.MustCompile(`^etcdsd watch: cannot read etcd after revision (\d+), retrying: .*etcd unreachable`)
	var m []string
	itest.Eventually(t, 10*time.Second, "the outage line on stderr", func() bool {
		m = outage.FindStringSubmatch(text.stderr.String())
		return m != nil
	})
	if rev, _ := strconv.ParseInt(m[1], 10, 64); rev <= 0 || rev > last {
		t.Fatalf("outage after revision %d, want one in [1, %d]", rev, last)
	}
	var st struct {
		Event    string
		Revision int64
		Error    string
	}
	if err := json.Unmarshal([]byte(js.line(t, 10*time.Second, `"event":"outage"`)), &st); err != nil ||
		st.Revision <= 0 || st.Revision > last || !strings.Contains(st.Error, "etcd unreachable") {
		t.Fatalf("json outage object %+v (%v)", st, err)
	}

	srv.Start()
	recovered := fmt.Sprintf("etcdsd watch: recovered, resumed from revision %d\n", last)
	itest.Eventually(t, 15*time.Second, "the recovery line on stderr", func() bool {
		return strings.Contains(text.stderr.String(), recovered)
	})
	l := js.line(t, 15*time.Second, `"event":"recovered"`)
	if l != fmt.Sprintf(`{"event":"recovered","revision":%d}`, last) {
		t.Fatalf("json recovery line %s, want revision %d", l, last)
	}
	rev := put(t, raw, key, "10.0.0.3:80")
	if l := text.line(t, 5*time.Second, "10.0.0.3:80"); !strings.HasPrefix(l, strconv.FormatInt(rev, 10)+" ") {
		t.Fatalf("change after the recovery: %q, want revision %d", l, rev)
	}
	if l := js.line(t, 5*time.Second, "10.0.0.3:80"); !strings.HasPrefix(l, fmt.Sprintf(`{"event":"change","revision":%d,`, rev)) {
		t.Fatalf("json change after the recovery: %s, want revision %d", l, rev)
	}
	for _, p := range []*proc{text, js} {
		if code, _ := p.interrupt(t); code != 0 {
			t.Fatalf("watch exit code %d after interrupt; stderr %s", code, p.stderr)
		}
	}
	stderr := text.stderr.String()
	if strings.Count(stderr, "cannot read etcd") != 1 || strings.Count(stderr, "recovered") != 1 || strings.Count(stderr, "\n") != 2 {
		t.Fatalf("stderr of watch: %q; want one outage line and one recovery line", stderr)
	}
}

// An outage shorter than --timeout is ridden out by the client, which
// reconnects the watch stream at the next revision: nothing is missed, and
// watch prints nothing about it; should the stream break all the same, an
// outage line is always followed by a recovery line.
func TestCLIWatchRidesOutAnOutageShorterThanItsTimeout(t *testing.T) {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("needs an embedded etcd to stop and start")
	}
	raw := srv.Client(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	key := cat.InstanceKey("short", "a")
	put(t, raw, key, "10.0.0.1:80")

	text := start(t, "watch", "short", "--timeout", "30s", ep)
	text.line(t, 5*time.Second, "10.0.0.1:80")
	began := time.Now()
	srv.Restart()
	t.Logf("etcd stopped and started again in %v", time.Since(began))
	rev := put(t, raw, key, "10.0.0.2:80")
	if l := text.line(t, 15*time.Second, "10.0.0.2:80"); !strings.HasPrefix(l, strconv.FormatInt(rev, 10)+" ") {
		t.Fatalf("change after the restart: %q, want revision %d", l, rev)
	}
	if code, _ := text.interrupt(t); code != 0 {
		t.Fatalf("watch exit code %d after interrupt; stderr %s", code, text.stderr)
	}
	stderr := text.stderr.String()
	if stderr != "" && (strings.Count(stderr, "cannot read etcd") != 1 || strings.Count(stderr, "recovered, resumed") != 1) {
		t.Fatalf("stderr of watch: %q; want nothing, or one outage line and one recovery line", stderr)
	}
	t.Logf("stderr: %q", stderr)
}
