package etcdtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/internal/embedetcd"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const (
	// childEnv carries a child's childConfig as JSON; its presence makes
	// RunServerIfChild serve etcd instead of returning.
	childEnv = "ETCDTEST_CHILD_CONFIG"
	// readyLine is what a child prints on stdout once etcd serves clients.
	readyLine = "etcdtest: ready"
	// exitAddrInUse is a child's exit code when a port is taken, so that
	// the parent knows to try other ports.
	exitAddrInUse = 3
	// stopTimeout bounds a graceful stop of a child, which takes up to
	// about 5 s while clients hold watch or keepalive streams.
	stopTimeout = 30 * time.Second
)

// childConfig is what a child needs to start the same member every time.
type childConfig struct {
	Name   string `json:"name"`
	Dir    string `json:"dir"`
	Client string `json:"client"`
	Peer   string `json:"peer"`
	Token  string `json:"token"`
	// Cluster is the initial cluster, "name=peerURL,..."; empty for a
	// single member.
	Cluster string `json:"cluster,omitempty"`
}

// RunServerIfChild makes the test binary serve etcd when StartProcess
// started it, and returns at once otherwise. Call it first in TestMain:
//
//	func TestMain(m *testing.M) {
//		etcdtest.RunServerIfChild()
//		os.Exit(m.Run())
//	}
//
// In a child it never returns: it serves etcd until it is killed, told to
// stop with SIGTERM or SIGINT, or its parent exits, and then exits.
func RunServerIfChild() {
	raw, ok := os.LookupEnv(childEnv)
	if !ok {
		return
	}
	os.Exit(runChild(raw))
}

// runChild serves the member that raw describes and returns the exit code.
func runChild(raw string) int {
	var cc childConfig
	if err := json.Unmarshal([]byte(raw), &cc); err != nil {
		fmt.Fprintf(os.Stderr, "etcdtest: child: parse %s=%q: %v\n", childEnv, raw, err)
		return 2
	}
	client, err := url.Parse(cc.Client)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcdtest: child: parse client URL %q: %v\n", cc.Client, err)
		return 2
	}
	peer, err := url.Parse(cc.Peer)
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcdtest: child: parse peer URL %q: %v\n", cc.Peer, err)
		return 2
	}
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	m := &embedetcd.Member{
		Name:    cc.Name,
		Dir:     cc.Dir,
		Client:  *client,
		Peer:    *peer,
		Token:   cc.Token,
		Cluster: cc.Cluster,
		Log:     zap.New(zapcore.NewCore(enc, zapcore.Lock(os.Stderr), zapcore.ErrorLevel)),
	}
	if err := launch(m, 1); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if errors.Is(err, syscall.EADDRINUSE) {
			return exitAddrInUse
		}
		return 1
	}
	if err := waitReady(m, time.Now().Add(readyTimeout)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		m.Stop()
		return 1
	}
	fmt.Println(readyLine)

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	// The parent holds the other end of stdin; EOF means it is gone. This
	// goroutine ends with the process, which exits right after.
	orphaned := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(orphaned)
	}()
	select {
	case <-ctx.Done():
		m.Stop()
		return 0
	case <-orphaned:
		return 1
	case err := <-m.Failures():
		fmt.Fprintf(os.Stderr, "etcdtest: child: member %s failed: %v\n", m.Name, err)
		return 1
	}
}

// A Process is an etcd member in a child process: the test binary started
// again, serving etcd instead of running tests. Unlike a Server it can be
// killed with SIGKILL. Call its methods from the goroutine of the test it
// was created for.
type Process struct {
	tb       testing.TB
	cfg      childConfig
	endpoint string
	log      *testLog

	cmd    *exec.Cmd     // nil while not running
	exited chan struct{} // closed once cmd has exited and been waited for
}

// StartProcess starts a single-member etcd in a child process on free
// loopback ports with data in tb.TempDir, waits until it serves clients,
// and kills it when the test ends. The child is the test binary itself, so
// the package's TestMain must call RunServerIfChild first; StartProcess
// fails the test with a hint when it does not. A child also exits when the
// test process dies, so no etcd outlives the tests.
//
// StartProcess takes no options: WithConfig's function cannot be passed to
// another process. ETCD_ENDPOINTS does not affect it.
func StartProcess(tb testing.TB) *Process {
	tb.Helper()
	p := &Process{tb: tb, log: newTestLog(tb)}
	p.cfg = childConfig{Name: "etcdtest", Token: uniqueToken()}
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			tb.Fatal(err)
		}
		client, peer := embedetcd.LoopbackURL(ports[0]), embedetcd.LoopbackURL(ports[1])
		p.cfg.Dir = tb.TempDir()
		p.cfg.Client, p.cfg.Peer = client.String(), peer.String()
		p.endpoint = embedetcd.EndpointOf(client)
		err = p.start()
		if err == nil {
			break
		}
		if !errors.Is(err, errAddrInUse) || attempt == bindAttempts {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(p.Kill)
	return p
}

// errAddrInUse reports that a child exited because a port was taken.
var errAddrInUse = errors.New("address already in use")

// start starts the child and waits until it serves clients.
func (p *Process) start() error {
	ready, err := p.spawn()
	if err != nil {
		return err
	}
	return p.await(ready, time.Now().Add(readyTimeout))
}

// spawn starts the child without waiting for it to serve, so that the
// members of a cluster can find each other; the returned channel is closed
// once the child prints readyLine.
func (p *Process) spawn() (<-chan struct{}, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("etcdtest: start process: find test binary: %w", err)
	}
	raw, err := json.Marshal(p.cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: start process: encode config: %w", err)
	}
	// The flag keeps a binary whose TestMain lacks the hook from running
	// the tests again in the child; it then exits at once, and we say why.
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	ready := &readyWriter{out: p.log, ready: make(chan struct{})}
	cmd.Stdout = ready
	cmd.Stderr = p.log
	// Nothing is written to stdin: the child takes its EOF for our exit.
	if _, err := cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("etcdtest: start process: stdin pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("etcdtest: start process %s: %w", exe, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	return ready.ready, nil
}

// await waits until the child that spawn started serves clients, exits or
// deadline passes; then it kills the child.
func (p *Process) await(ready <-chan struct{}, deadline time.Time) error {
	cmd, exited := p.cmd, p.exited
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-ready:
		return nil
	case <-exited:
		p.cmd = nil
		code := cmd.ProcessState.ExitCode()
		if code == exitAddrInUse {
			return fmt.Errorf("etcdtest: start process on %s: %w", p.endpoint, errAddrInUse)
		}
		return fmt.Errorf("etcdtest: start process on %s: exited with code %d before serving; does TestMain call etcdtest.RunServerIfChild first?", p.endpoint, code)
	case <-timer.C:
		p.Kill()
		return fmt.Errorf("etcdtest: start process on %s: not ready after %v", p.endpoint, readyTimeout)
	}
}

// Endpoints returns the client endpoint, "127.0.0.1:PORT", which stays the
// same across restarts.
func (p *Process) Endpoints() []string {
	return []string{p.endpoint}
}

// Client returns a new client of this process, closed when tb's test ends.
func (p *Process) Client(tb testing.TB) *clientv3.Client {
	tb.Helper()
	return newClient(tb, p.Endpoints())
}

// Kill kills the child with SIGKILL and waits until it is gone. Data that
// etcd acknowledged survives: etcd wrote it to the WAL, and the page cache
// outlives the process. It does nothing if the child is not running.
func (p *Process) Kill() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.exited
	p.cmd = nil
}

// Stop asks the child to stop with SIGTERM and waits until it has closed
// etcd and exited, which takes up to about 5 s while clients hold watch or
// keepalive streams. After 30 s it kills the child and fails the test. It
// does nothing if the child is not running.
func (p *Process) Stop() {
	p.tb.Helper()
	if p.cmd == nil {
		return
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		// The child exited already, or the platform has no SIGTERM.
		p.cmd.Process.Kill()
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case <-p.exited:
		p.cmd = nil
	case <-timer.C:
		p.Kill()
		p.tb.Fatalf("etcdtest: stop process on %s: still running %v after SIGTERM; killed it", p.endpoint, stopTimeout)
	}
}

// Restart stops the child if it runs, then starts a new one on the same
// ports with the same data and waits until it serves clients. Clients
// created before reconnect on their own.
func (p *Process) Restart() {
	p.tb.Helper()
	p.Stop()
	var err error
	for attempt := range bindAttempts {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
		}
		if err = p.start(); !errors.Is(err, errAddrInUse) {
			break
		}
	}
	if err != nil {
		p.tb.Fatal(err)
	}
}

// readyWriter takes a child's stdout, closes ready when the child prints
// readyLine, and passes all output on to out.
type readyWriter struct {
	out   io.Writer
	ready chan struct{}
	seen  bool   // ready is closed
	line  []byte // output after the last newline
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.out.Write(p)
	w.line = append(w.line, p...)
	for {
		i := bytes.IndexByte(w.line, '\n')
		if i < 0 {
			return len(p), nil
		}
		if !w.seen && string(w.line[:i]) == readyLine {
			w.seen = true
			close(w.ready)
		}
		w.line = w.line[i+1:]
	}
}
