package catalog_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/kit/endpoint"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/endpointer"
	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

var cliCommands = []string{"services", "list", "watch", "register", "drain", "undrain", "set-weight"}

func TestCLIHelp(t *testing.T) {
	r := etcdsd(t)
	if r.code != 2 || !strings.Contains(r.stdout, "Usage: etcdsd <command>") {
		t.Fatalf("no arguments: exit %d, stdout %q; want usage and exit 2", r.code, r.stdout)
	}
	r = etcdsd(t, "help").ok(t)
	for _, c := range cliCommands {
		if !strings.Contains(r.stdout, "\n  "+c+" ") {
			t.Errorf("help does not list %q:\n%s", c, r.stdout)
		}
	}
	for _, c := range cliCommands {
		r := etcdsd(t, c, "-h").ok(t)
		for _, want := range []string{"Usage: etcdsd " + c, "-endpoints", "-timeout", "-o string", "-cacert", "-user"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("%s -h lacks %q:\n%s", c, want, r.stdout)
			}
		}
		if h := etcdsd(t, "help", c).ok(t); h.stdout != r.stdout {
			t.Errorf("help %s:\n%s\nwant what %s -h prints:\n%s", c, h.stdout, c, r.stdout)
		}
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"--timeout", "1s", "-h"}} {
		r := etcdsd(t, args...).ok(t)
		for _, want := range []string{"Usage: etcdsd <command>", "etcdsd [common flags] <command>", "-endpoints", "the one after wins"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("etcdsd %q lacks %q:\n%s", args, want, r.stdout)
			}
		}
	}
}

// etcdctl takes its flags before or after the command; so does etcdsd,
// and a flag given on both sides takes the value given after the command.
func TestCLITakesCommonFlagsBeforeOrAfterTheCommand(t *testing.T) {
	srv := etcdtest.NewServer(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	register(t, cat, catalog.Instance{Name: "api", ID: "api-1", Address: "10.0.0.1:8080"})
	good := strings.Join(srv.Endpoints(), ",")
	dead := deadEndpoint(t)

	want := "SERVICE  INSTANCES\napi      1\n"
	for _, args := range [][]string{
		{"--endpoints", good, "services"},
		{"--endpoints=" + good, "--timeout", "2s", "services"},
		{"services", "--endpoints", good},
		{"--endpoints", dead, "--timeout", "1s", "services", "--endpoints", good},
	} {
		if r := etcdsd(t, args...).ok(t); r.stdout != want {
			t.Errorf("etcdsd %q:\n%s\nwant:\n%s", args, r.stdout, want)
		}
	}
	r := etcdsd(t, "--endpoints", good, "--timeout", "1s", "services", "--endpoints", dead)
	if r.code != 1 || !strings.Contains(r.stderr, dead) {
		t.Errorf("endpoints after the command not taken: exit %d, stderr %q; want exit 1 naming %s", r.code, r.stderr, dead)
	}
	r = etcdsd(t, "-o", "json", "--endpoints", good, "list", "api").ok(t)
	if !strings.HasPrefix(r.stdout, "[") || !strings.Contains(r.stdout, `"address": "10.0.0.1:8080"`) {
		t.Errorf("-o json before list: %q", r.stdout)
	}
	r = etcdsd(t, "--output", "json", "--endpoints", good, "services", "-o", "table").ok(t)
	if r.stdout != want {
		t.Errorf("-o table after --output json before: %q", r.stdout)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "yaml", "--endpoints", good, "services"}, `-o "yaml": want table or json`},
		{[]string{"--force", "drain", "api", "api-1"}, "flag provided but not defined: -force (only the common flags may come before the command)"},
		{[]string{"--endpoints", good}, "no command after the flags"},
		{[]string{"--endpoints", good, "nosuch"}, `unknown command "nosuch"`},
		{[]string{"help", "nosuch"}, `unknown command "nosuch"`},
	} {
		r := etcdsd(t, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("etcdsd %q: exit %d, stderr %q; want exit 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

// deadEndpoint returns a loopback address where nothing listens.
func deadEndpoint(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestCLIRejectsBadUsageWithExitCode2(t *testing.T) {
	srv := etcdtest.NewServer(t)
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"nosuch"}, `unknown command "nosuch"`},
		{[]string{"list", "-o", "yaml", ep}, `-o "yaml": want table or json`},
		{[]string{"services", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"services", "extra", ep}, `unexpected arguments ["extra"]`},
		{[]string{"services", "--timeout", "0s", ep}, "--timeout 0s: must be positive"},
		{[]string{"services", "--endpoints", ","}, `--endpoints ",": no endpoint given`},
		{[]string{"drain", "app", ep}, "want 2 argument(s), got 1"},
		{[]string{"set-weight", "app", "a", ep}, "give a weight or --clear"},
		{[]string{"set-weight", "app", "a", "x", ep}, `weight "x" is not an integer`},
		{[]string{"set-weight", "--force", "app", "a", "0", ep}, `weight "0" is not an integer in [1, 1048576]`},
		{[]string{"drain", "--force", "a/b", "c", ep}, `service name "a/b" contains "/"`},
		{[]string{"register", "--value", "x", ep}, "--key is required"},
		{[]string{"register", "--key", "/services/a/1", ep}, "--value is required"},
		{[]string{"register", "--key", "/services/a/1", "--value", "x", "--ttl", "1s", ep}, "--ttl 1s: must be at least 2s"},
	} {
		r := etcdsd(t, tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("etcdsd %q: exit %d, stderr %q; want exit 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

func TestCLIFailsFastOnUnreachableEtcd(t *testing.T) {
	addr := deadEndpoint(t)
	for _, args := range [][]string{
		{"services"},
		{"list", "app"},
		{"watch", "app"},
		{"drain", "app", "a"},
		{"register", "--key", "/services/app/a", "--value", "10.0.0.1:80"},
	} {
		args = append(args, "--endpoints", addr, "--timeout", "1s")
		r := etcdsd(t, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "no endpoint answered within dial timeout 1s") || !strings.Contains(r.stderr, addr) {
			t.Errorf("etcdsd %q: exit %d, stderr %q; want exit 1 naming %s and the timeout", args, r.code, r.stderr, addr)
		}
		if r.took > 3*time.Second {
			t.Errorf("etcdsd %q took %v with --timeout 1s", args, r.took)
		}
	}
}

func TestCLIServicesAndListAgainstEtcd(t *testing.T) {
	srv := etcdtest.NewServer(t)
	raw := srv.Client(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	register(t, cat, catalog.Instance{Name: "api", ID: "api-1", Address: "10.0.0.1:8080", Version: "v1", Metadata: map[string]string{"zone": "a"}})
	register(t, cat, catalog.Instance{Name: "api", ID: "api-2", Address: "10.0.0.2:8080", Version: "v2", Weight: 3})
	register(t, cat, catalog.Instance{Name: "apigw", ID: "gw-1", Address: "10.0.1.1:443"})
	put(t, raw, cat.InstanceKey("web", "w1"), "http://10.0.2.1:80")

	r := etcdsd(t, "services", ep).ok(t)
	want := "SERVICE  INSTANCES\napi      2\napigw    1\nweb      1\n"
	if r.stdout != want {
		t.Fatalf("services:\n%s\nwant:\n%s", r.stdout, want)
	}
	r = etcdsd(t, "services", "-o", "json", ep).ok(t)
	var services []catalog.ServiceInfo
	if err := json.Unmarshal([]byte(r.stdout), &services); err != nil || len(services) != 3 || services[0] != (catalog.ServiceInfo{Name: "api", Instances: 2}) {
		t.Fatalf("services -o json = %q (%v)", r.stdout, err)
	}

	r = etcdsd(t, "set-weight", "api", "api-1", "5", ep).ok(t)
	if !strings.Contains(r.stdout, "set the weight of api/api-1 to 5") || !strings.Contains(r.stdout, "etcdsd endpointer (Weighted strategy)") ||
		!strings.Contains(r.stdout, "the value their factory receives never changes") {
		t.Fatalf("set-weight: %q, want who honours it", r.stdout)
	}
	r = etcdsd(t, "drain", "api", "api-2", ep).ok(t)
	for _, want := range []string{"drained api/api-2: out of rotation", "honoured by: etcdsd etcdv3.NewInstancer on the client of etcdv3.NewClient", "not by: go-kit's own sd/etcdv3"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("drain: %q, want %q", r.stdout, want)
		}
	}
	r = etcdsd(t, "list", "api", ep).ok(t)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 ||
		strings.Join(strings.Fields(lines[0]), " ") != "SERVICE ID ADDRESS VERSION WEIGHT STATE METADATA" ||
		strings.Join(strings.Fields(lines[1]), " ") != "api api-1 10.0.0.1:8080 v1 5 (set) up zone=a" ||
		strings.Join(strings.Fields(lines[2]), " ") != "api api-2 10.0.0.2:8080 v2 3 drained -" {
		t.Fatalf("list api:\n%s", r.stdout)
	}
	if strings.Index(lines[0], "ADDRESS") != strings.Index(lines[1], "10.0.0.1") {
		t.Fatalf("columns not aligned:\n%s", r.stdout)
	}

	r = etcdsd(t, "list", "api*", "-o", "json", ep).ok(t)
	var listed []struct {
		Service, ID, Address string
		Weight               int
		Disabled             bool
		Key                  string
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil {
		t.Fatalf("list -o json does not parse: %v\n%s", err, r.stdout)
	}
	if len(listed) != 3 || listed[2].Service != "apigw" || !listed[1].Disabled || listed[0].Weight != 5 || listed[0].Key != "/services/api/api-1" {
		t.Fatalf("list api* -o json = %+v", listed)
	}
	r = etcdsd(t, "list", ep).ok(t) // everything
	if n := strings.Count(r.stdout, "\n"); n != 5 {
		t.Fatalf("list of all: %d lines, want header + 4:\n%s", n, r.stdout)
	}

	// Typos are caught; --force sets a property ahead of the instance.
	r = etcdsd(t, "drain", "api", "api-9", ep)
	if r.code != 1 || !strings.Contains(r.stderr, `service "api" has no instance "api-9"`) {
		t.Fatalf("drain of a missing instance: exit %d, %q", r.code, r.stderr)
	}
	r = etcdsd(t, "drain", "--force", "api", "api-9", "-o", "json", ep).ok(t)
	var change struct {
		Property, Value           string
		HonouredBy, NotHonouredBy []string
	}
	if err := json.Unmarshal([]byte(r.stdout), &change); err != nil || change.Property != "disabled" || change.Value != "true" ||
		len(change.HonouredBy) == 0 || !slices.Contains(change.NotHonouredBy, "go-kit's own sd/etcdv3") {
		t.Fatalf("drain -o json = %q (%v)", r.stdout, err)
	}
	etcdsd(t, "set-weight", "--clear", "api", "api-1", ep).ok(t)
	etcdsd(t, "undrain", "api", "api-2", ep).ok(t)
	props, err := cat.Properties(context.Background(), "api")
	if err != nil || len(props) != 1 || props[0].ID != "api-9" {
		t.Fatalf("properties after clear and undrain: %+v, %v", props, err)
	}
}

func TestCLIWatchPrintsTypedEventsUntilInterrupted(t *testing.T) {
	srv := etcdtest.NewServer(t)
	raw := srv.Client(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	put(t, raw, cat.InstanceKey("wat", "a"), `{"address":"10.0.0.1:80"}`)

	table := start(t, "watch", "wat", ep)
	table.line(t, 5*time.Second, "REVISION")
	if l := table.line(t, 5*time.Second, "10.0.0.1:80"); strings.Join(strings.Fields(l)[1:5], " ") != "put instance wat a" {
		t.Fatalf("first line %q", l)
	}

	p := start(t, "watch", "wa*", "-o", "json", ep)
	p.line(t, 5*time.Second, `"10.0.0.1:80"`)
	rev := put(t, raw, cat.InstanceKey("wat", "a"), `{"address":"10.0.0.1:81"}`)
	if err := cat.SetProperty(context.Background(), "wat", "a", catalog.PropDisabled, "true"); err != nil {
		t.Fatal(err)
	}
	type event struct {
		Revision int64
		Type     string
		Kind     string
		Service  string
		ID       string
		Instance *catalog.Instance
		Property *catalog.Property
	}
	// The two kinds are not ordered with each other: take them as they come.
	got := map[string]event{}
	for len(got) < 2 {
		var ev event
		if err := json.Unmarshal([]byte(p.line(t, 5*time.Second, `"revision"`)), &ev); err != nil {
			t.Fatal(err)
		}
		got[ev.Kind] = ev
	}
	if ev := got["instance"]; ev.Type != "put" || ev.Revision != rev || ev.Service != "wat" || ev.ID != "a" || ev.Instance == nil || ev.Instance.Address != "10.0.0.1:81" {
		t.Fatalf("instance event %+v, want a put at revision %d", ev, rev)
	}
	if ev := got["property"]; ev.Type != "put" || ev.Property == nil || ev.Property.Name != "disabled" || ev.Property.Value != "true" || ev.Revision <= rev {
		t.Fatalf("property event %+v", ev)
	}
	table.line(t, 5*time.Second, "disabled=true")
	for _, w := range []*proc{p, table} {
		if code, _ := w.interrupt(t); code != 0 {
			t.Fatalf("watch exit code %d after interrupt; stderr %s", code, w.stderr)
		}
	}
}

func TestCLIDrainRemovesInstanceFromEndpointerTrafficWithinASecond(t *testing.T) {
	srv := etcdtest.NewServer(t)
	raw := srv.Client(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	const svc = "traffic"

	// Instance a lives in its own process: etcdsd register.
	a := start(t, "register", "--key", cat.InstanceKey(svc, "a"), "--value", `{"address":"a:1"}`, "--ttl", "2s", ep)
	a.line(t, 5*time.Second, "registered "+cat.InstanceKey(svc, "a"))
	register(t, cat, catalog.Instance{Name: svc, ID: "b", Address: "b:1"})

	in := newInstancer(t, cat, svc)
	factory := func(address string) (endpoint.Endpoint, io.Closer, error) {
		return func(context.Context, any) (any, error) { return address, nil }, nil, nil
	}
	e, err := endpointer.New(in, factory, itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	call := e.Endpoint()
	// served reports whether the next n calls all went to only.
	served := func(only string, n int) bool {
		for range n {
			got, err := call(context.Background(), nil)
			if err != nil || got != only {
				return false
			}
		}
		return true
	}
	sawA := func() bool {
		for range 4 {
			if got, _ := call(context.Background(), nil); got == "a:1" {
				return true
			}
		}
		return false
	}
	itest.Eventually(t, 5*time.Second, "traffic to a", sawA)
	registeredAt := time.Now()

	drainStart := time.Now()
	drain := etcdsd(t, "drain", svc, "a", ep).ok(t)
	itest.Eventually(t, time.Second, "no traffic to a within 1s of the drain", func() bool { return served("b:1", 20) })
	t.Logf("drain: command ran %v; no traffic to a %v after it started", drain.took, time.Since(drainStart))
	if !a.running() || !itest.KeyExists(t, raw, cat.InstanceKey(svc, "a")) {
		t.Fatal("the drained instance's process or registration is gone")
	}

	undrainStart := time.Now()
	etcdsd(t, "undrain", svc, "a", ep).ok(t)
	itest.Eventually(t, time.Second, "traffic to a within 1s of the undrain", sawA)
	t.Logf("undrain: traffic to a again %v after the command started", time.Since(undrainStart))

	// The registration outlived its TTL (kept alive), and Ctrl-C
	// deregisters it.
	itest.Eventually(t, 5*time.Second, "the TTL to pass", func() bool { return time.Since(registeredAt) > 2500*time.Millisecond })
	if !itest.KeyExists(t, raw, cat.InstanceKey(svc, "a")) {
		t.Fatal("registration not kept alive past its TTL")
	}
	code, rest := a.interrupt(t)
	if code != 0 || !strings.Contains(strings.Join(rest, "\n"), "deregistered "+cat.InstanceKey(svc, "a")) {
		t.Fatalf("register after interrupt: exit %d, stdout %q, stderr %s", code, rest, a.stderr)
	}
	if itest.KeyExists(t, raw, cat.InstanceKey(svc, "a")) {
		t.Fatal("key still in etcd after register was interrupted")
	}
	itest.Eventually(t, time.Second, "only b after a deregistered", func() bool { return served("b:1", 20) })
}

// A service named on the command line that has no instance is an error
// naming it and the root, on one line, for every command that changes or
// lists it; watch waits for it, as etcdctl watches a key not there yet.
func TestCLINamesAnUnknownService(t *testing.T) {
	srv := etcdtest.NewServer(t)
	raw := srv.Client(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	register(t, cat, catalog.Instance{Name: "api", ID: "api-1", Address: "10.0.0.1:8080"})

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "nosuch"}, `etcdsd list: no service "nosuch" under /services/`},
		{[]string{"list", "--root", "/other/", "api"}, `etcdsd list: no service "api" under /other/`},
		{[]string{"drain", "nosuch", "a"}, `etcdsd drain: no service "nosuch" under /services/ (use --force to set it anyway)`},
		{[]string{"undrain", "nosuch", "a"}, `etcdsd undrain: no service "nosuch" under /services/ (use --force to set it anyway)`},
		{[]string{"set-weight", "nosuch", "a", "3"}, `etcdsd set-weight: no service "nosuch" under /services/ (use --force to set it anyway)`},
		{[]string{"set-weight", "--clear", "nosuch", "a"}, `etcdsd set-weight: no service "nosuch" under /services/ (use --force to set it anyway)`},
		{[]string{"drain", "api", "api-9"}, `etcdsd drain: service "api" has no instance "api-9" (use --force to set it anyway)`},
	} {
		r := etcdsd(t, append(tc.args, ep)...)
		if r.code != 1 || r.stderr != tc.want+"\n" || r.stdout != "" {
			t.Errorf("etcdsd %q: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.args, r.code, r.stdout, r.stderr, tc.want)
		}
	}
	if r := etcdsd(t, "list", "nosuch*", ep).ok(t); strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("list of a prefix that matches nothing: %q, want the header only", r.stdout)
	}
	etcdsd(t, "drain", "--force", "nosuch", "a", ep).ok(t)

	w := start(t, "watch", "later", ep)
	w.line(t, 5*time.Second, "REVISION")
	itest.Eventually(t, 5*time.Second, "a note that the service has no instance yet", func() bool {
		return w.stderr.String() == "etcdsd watch: no service \"later\" under /services/ yet; watching for it\n"
	})
	rev := put(t, raw, cat.InstanceKey("later", "l-1"), "10.0.0.9:80")
	if l := w.line(t, 5*time.Second, "10.0.0.9:80"); !strings.HasPrefix(l, strconv.FormatInt(rev, 10)+" ") {
		t.Fatalf("watch of a service that appeared later: %q, want revision %d", l, rev)
	}
	if code, _ := w.interrupt(t); code != 0 {
		t.Fatalf("watch exit code %d; stderr %s", code, w.stderr)
	}
}

// drain --all takes every instance of a service out of rotation (the
// service-wide property), undrain --all puts them back, and each undrain
// names the drain that still keeps what it undrained out.
func TestCLIDrainAllTakesAWholeServiceOutOfRotation(t *testing.T) {
	srv := etcdtest.NewServer(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	const svc = "whole"
	register(t, cat, catalog.Instance{Name: svc, ID: "w-1", Address: "10.0.0.1:80"})
	register(t, cat, catalog.Instance{Name: svc, ID: "w-2", Address: "10.0.0.2:80"})
	in := newInstancer(t, cat, svc)
	waitState(t, in, 5*time.Second, "10.0.0.1:80", "10.0.0.2:80")

	r := etcdsd(t, "drain", "--all", svc, ep).ok(t)
	for _, want := range []string{"drained service whole as a whole: its instances, present and future, out of rotation; processes keep running\n", "honoured by: etcdsd etcdv3.NewInstancer on the client of etcdv3.NewClient; etcdsd catalog Instancer;", "not by: go-kit's own sd/etcdv3"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("drain --all: %q, want %q", r.stdout, want)
		}
	}
	waitState(t, in, time.Second, nil...)
	r = etcdsd(t, "list", svc, ep).ok(t)
	if strings.Count(r.stdout, " drained ") != 2 {
		t.Fatalf("list after drain --all:\n%s\nwant both drained", r.stdout)
	}

	etcdsd(t, "drain", svc, "w-2", ep).ok(t)
	r = etcdsd(t, "undrain", "--all", svc, ep).ok(t)
	if !strings.HasPrefix(r.stdout, "undrained service whole as a whole: back in rotation, but instances drained on their own stay out: w-2\n") {
		t.Fatalf("undrain --all with w-2 drained on its own: %q", r.stdout)
	}
	waitState(t, in, time.Second, "10.0.0.1:80")

	r = etcdsd(t, "drain", "--all", svc, "-o", "json", ep).ok(t)
	var change map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &change); err != nil || change["service"] != svc || change["value"] != "true" || change["id"] != nil {
		t.Fatalf("drain --all -o json = %s (%v); want no id", r.stdout, err)
	}
	r = etcdsd(t, "undrain", svc, "w-2", ep).ok(t)
	if !strings.HasPrefix(r.stdout, "undrained whole/w-2: its own drain removed, but it stays out while service whole is drained as a whole (undrain --all whole)\n") {
		t.Fatalf("undrain of an instance of a drained service: %q", r.stdout)
	}
	etcdsd(t, "drain", svc, "w-2", ep).ok(t)
	r = etcdsd(t, "undrain", svc, "w-2", "-o", "json", ep).ok(t)
	var undrained struct {
		ID           string
		StillDrained []catalog.Property
	}
	if err := json.Unmarshal([]byte(r.stdout), &undrained); err != nil || undrained.ID != "w-2" ||
		len(undrained.StillDrained) != 1 || undrained.StillDrained[0] != (catalog.Property{Service: svc, Name: "disabled", Value: "true"}) {
		t.Fatalf("undrain -o json = %s (%v); want stillDrained naming the service's drain", r.stdout, err)
	}
	waitState(t, in, time.Second, nil...)
	r = etcdsd(t, "undrain", "--all", svc, ep).ok(t)
	if !strings.HasPrefix(r.stdout, "undrained service whole as a whole: back in rotation\n") {
		t.Fatalf("undrain --all: %q", r.stdout)
	}
	waitState(t, in, time.Second, "10.0.0.1:80", "10.0.0.2:80")

	r = etcdsd(t, "drain", "--all", "nosuch", ep)
	if r.code != 1 || r.stderr != "etcdsd drain: no service \"nosuch\" under /services/ (use --force to set it anyway)\n" {
		t.Fatalf("drain --all of an unknown service: exit %d, stderr %q", r.code, r.stderr)
	}
	etcdsd(t, "drain", "--all", "--force", "nosuch", ep).ok(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"drain", "--all", svc, "w-1"}, `--all takes the service only, got ["whole" "w-1"]`},
		{[]string{"undrain", "--all"}, "want 1 argument(s), got 0"},
		{[]string{"drain"}, "want 2 argument(s), got 0"},
		{[]string{"set-weight", "--all", svc, "3"}, "flag provided but not defined: -all"},
	} {
		r := etcdsd(t, append(tc.args, ep)...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("etcdsd %q: exit %d, stderr %q; want exit 2 and %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

// What reaches stderr is one short line naming the operation, the bad
// value and the cause, without the library's layers of wrapping; a usage
// error is followed by the command's usage line.
func TestCLIErrorsAreOneShortLine(t *testing.T) {
	srv := etcdtest.NewServer(t)
	ep := "--endpoints=" + strings.Join(srv.Endpoints(), ",")
	dead := deadEndpoint(t)
	missing := filepath.Join(t.TempDir(), "missing.pem")
	const drainUsage = `Usage: etcdsd drain [flags] (<service> <id> | --all <service>); "etcdsd drain -h" for more`
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"services", "--endpoints", dead, "--timeout", "1s"}, 1,
			"etcdsd services: etcd at [" + dead + "]: no endpoint answered within dial timeout 1s\n"},
		{[]string{"drain", "app", "a", "--endpoints", dead, "--timeout", "1s"}, 1,
			"etcdsd drain: etcd at [" + dead + "]: no endpoint answered within dial timeout 1s\n"},
		{[]string{"list", "app", ep, "--cacert", missing}, 1,
			"etcdsd list: --cacert " + strconv.Quote(missing) + ": no such file or directory\n"},
		{[]string{"drain", "--force", "a/b", "c", ep}, 2,
			"etcdsd drain: service name \"a/b\" contains \"/\"\n" + drainUsage + "\n"},
		{[]string{"set-weight", "--force", "app", "a", "0", ep}, 2,
			"etcdsd set-weight: weight \"0\" is not an integer in [1, 1048576]\n" +
				`Usage: etcdsd set-weight [flags] <service> <id> (<weight> | --clear); "etcdsd set-weight -h" for more` + "\n"},
		{[]string{"list", "--root", "/services", ep}, 2,
			"etcdsd list: root \"/services\" must end with \"/\"\n" +
				`Usage: etcdsd list [flags] [<service> | <prefix>*]; "etcdsd list -h" for more` + "\n"},
		{[]string{"drain", "app", ep}, 2, "etcdsd drain: want 2 argument(s), got 1: [\"app\"]\n" + drainUsage + "\n"},
	} {
		r := etcdsd(t, tc.args...)
		if r.code != tc.code || r.stderr != tc.stderr {
			t.Errorf("etcdsd %q: exit %d, stderr\n%s\nwant exit %d and\n%s", tc.args, r.code, r.stderr, tc.code, tc.stderr)
		}
	}
}
