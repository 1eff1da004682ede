package catalog_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/itest"
)

// binary is the etcdsd command built once for the CLI tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "etcdsd-cli")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "etcdsd")
	// The CLI is a module of its own: built from its directory, it builds
	// in the workspace and with GOWORK=off alike.
	build := exec.Command("go", "build", "-C", "../../cmd/etcdsd", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build etcdsd:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// newCatalog returns a catalog with short leases and fast retries.
func newCatalog(t testing.TB, c *etcdv3.EtcdClient, opts ...catalog.Option) *catalog.Catalog {
	t.Helper()
	opts = append([]catalog.Option{
		catalog.WithTTL(500*time.Millisecond, 2*time.Second),
		catalog.WithLogger(itest.Logger(t)),
	}, opts...)
	cat, err := catalog.New(c, opts...)
	if err != nil {
		t.Fatalf("new catalog: %v", err)
	}
	return cat
}

// register registers inst and deregisters it at cleanup.
func register(t testing.TB, cat *catalog.Catalog, inst catalog.Instance) *catalog.Registration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reg, err := cat.Register(ctx, inst)
	if err != nil {
		t.Fatalf("register %+v: %v", inst, err)
	}
	t.Cleanup(func() { reg.Deregister(context.Background()) })
	return reg
}

// newInstancer starts a catalog Instancer stopped at cleanup.
func newInstancer(t testing.TB, cat *catalog.Catalog, service string) *catalog.Instancer {
	t.Helper()
	in, err := cat.NewInstancer(context.Background(), service)
	if err != nil {
		t.Fatalf("new instancer %q: %v", service, err)
	}
	t.Cleanup(in.Stop)
	return in
}

// addresses returns the sorted addresses of an Instancer's current state.
func addresses(t testing.TB, ev sd.Event) []string {
	t.Helper()
	out := make([]string, 0, len(ev.Instances))
	for _, v := range ev.Instances {
		out = append(out, parse(t, v).Address)
	}
	slices.Sort(out)
	return out
}

// parse parses an instance value or fails the test.
func parse(t testing.TB, v string) catalog.Instance {
	t.Helper()
	inst, err := instance.Parse(v)
	if err != nil {
		t.Fatalf("parse %q: %v", v, err)
	}
	return inst
}

// waitState waits until the Instancer's state, error-free, has exactly the
// addresses want.
func waitState(t testing.TB, in *catalog.Instancer, within time.Duration, want ...string) sd.Event {
	t.Helper()
	slices.Sort(want)
	var ev sd.Event
	itest.Eventually(t, within, fmt.Sprintf("instances %v", want), func() bool {
		ev = in.State()
		return ev.Err == nil && slices.Equal(addresses(t, ev), want)
	})
	return ev
}

// put writes key=value directly and returns the revision.
func put(t testing.TB, cli *clientv3.Client, key, value string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Put(ctx, key, value)
	if err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
	return resp.Header.Revision
}

// del deletes key directly and returns the revision.
func del(t testing.TB, cli *clientv3.Client, key string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Delete(ctx, key)
	if err != nil {
		t.Fatalf("delete %q: %v", key, err)
	}
	return resp.Header.Revision
}

// next receives the next event that is not an error, or fails.
func next(t testing.TB, events <-chan catalog.Event, within time.Duration) catalog.Event {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("events closed")
			}
			if ev.Err != nil {
				t.Logf("watch error event: %v", ev.Err)
				continue
			}
			return ev
		case <-timeout:
			t.Fatalf("no event within %v", within)
		}
	}
}

// result is the outcome of one run of the etcdsd binary.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// etcdsd runs the binary with args and waits for it (at most 30 s).
func etcdsd(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), "ETCD_ENDPOINTS=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("run etcdsd %q: %v", args, err)
	}
	return r
}

// ok fails the test unless r exited 0.
func (r result) ok(t testing.TB) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	return r
}

// proc is a long-running etcdsd (watch, register) whose stdout lines the
// test reads.
type proc struct {
	cmd    *exec.Cmd
	lines  chan string // closed when stdout ends
	stderr *itest.Buffer
	waited bool
	code   int
}

// start runs the binary with args in the background; the process is
// killed at cleanup if the test has not stopped it.
func start(t testing.TB, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "ETCD_ENDPOINTS=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, lines: make(chan string, 1024), stderr: &itest.Buffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcdsd %q: %v", args, err)
	}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		if !p.waited {
			cmd.Process.Kill()
			p.wait(t)
		}
	})
	return p
}

// line returns the next line of stdout that contains sub, or fails.
func (p *proc) line(t testing.TB, within time.Duration, sub string) string {
	t.Helper()
	timeout := time.After(within)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("stdout ended before a line with %q; stderr:\n%s", sub, p.stderr)
			}
			if strings.Contains(l, sub) {
				return l
			}
		case <-timeout:
			t.Fatalf("no line with %q within %v; stderr:\n%s", sub, within, p.stderr)
		}
	}
}

// running reports whether the process has not exited.
func (p *proc) running() bool {
	return p.cmd.Process.Signal(syscall.Signal(0)) == nil
}

// interrupt sends os.Interrupt, as Ctrl-C does, and returns the exit code
// and the rest of stdout.
func (p *proc) interrupt(t testing.TB) (int, []string) {
	t.Helper()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("interrupt: %v", err)
	}
	return p.wait(t)
}

func (p *proc) wait(t testing.TB) (int, []string) {
	t.Helper()
	var rest []string
	for l := range p.lines { // all reads before Wait
		rest = append(rest, l)
	}
	p.waited = true
	err := p.cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		p.code = exit.ExitCode()
	default:
		t.Fatalf("wait: %v", err)
	}
	return p.code, rest
}

// putFleet writes services×perService instances (service svc-<i>, ids
// i<j>) in transactions of 128 puts, fast enough for tests of 10,000.
func putFleet(t testing.TB, raw *clientv3.Client, cat *catalog.Catalog, services, perService int) {
	t.Helper()
	var ops []clientv3.Op
	flush := func() {
		if len(ops) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := raw.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatalf("txn of %d puts: %v", len(ops), err)
		}
		ops = ops[:0]
	}
	for i := range services {
		for j := range perService {
			ops = append(ops, clientv3.OpPut(cat.InstanceKey(fmt.Sprintf("svc-%d", i), fmt.Sprintf("i%d", j)), fmt.Sprintf(`{"address":"10.%d.%d.%d:80"}`, i, j/256, j%256)))
			if len(ops) == 128 {
				flush()
			}
		}
	}
	flush()
}
