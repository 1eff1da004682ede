package endpointer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	httptransport "github.com/go-kit/kit/transport/http"
	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/itest"
)

// An HTTP service in a process of its own can be killed with SIGKILL: the
// test binary started again, serving and registering itself instead of
// running tests (as etcdtest.StartProcess does for etcd). It registers
// itself, so that once it is killed its lease expires as a real crashed
// service's would.

const (
	// instanceEnv carries a child's instanceConfig as JSON; its presence
	// makes runInstanceIfChild serve instead of returning.
	instanceEnv = "ENDPOINTER_TEST_INSTANCE"
	// instanceReady prefixes the line a child prints on stdout, with its
	// address, once it serves and is registered.
	instanceReady = "instance ready "
)

// instanceConfig is what a child serves and registers.
type instanceConfig struct {
	Etcd    []string      `json:"etcd"`
	Key     string        `json:"key"`
	Name    string        `json:"name"`
	Version string        `json:"version"`
	TTL     time.Duration `json:"ttl"`
}

// runInstanceIfChild makes the test binary an HTTP service when
// startProcess started it, and returns at once otherwise. In a child it
// never returns.
func runInstanceIfChild() {
	raw, ok := os.LookupEnv(instanceEnv)
	if !ok {
		return
	}
	os.Exit(runInstance(raw))
}

// runInstance serves and registers until SIGTERM or its parent's exit, and
// returns the exit code.
func runInstance(raw string) int {
	var cfg instanceConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "instance: parse %s=%q: %v\n", instanceEnv, raw, err)
		return 2
	}
	logger := log.NewLogfmtLogger(log.NewSyncWriter(os.Stderr))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "instance %s: listen: %v\n", cfg.Name, err)
		return 1
	}
	addr := ln.Addr().String()
	ep := func(context.Context, any) (any, error) { return reply{Name: cfg.Name, Version: cfg.Version}, nil }
	srv := &http.Server{
		Handler: httptransport.NewServer(ep,
			func(context.Context, *http.Request) (any, error) { return nil, nil },
			httptransport.EncodeJSONResponse,
		),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := etcdv3.NewEtcdClient(ctx, cfg.Etcd, etcdv3.ClientOptions{DialTimeout: 2 * time.Second, RequestTimeout: 2 * time.Second, Logger: logger})
	if err != nil {
		fmt.Fprintf(os.Stderr, "instance %s: etcd client: %v\n", cfg.Name, err)
		return 1
	}
	defer client.Close()
	value, err := instance.Instance{ID: cfg.Name, Name: "greeter", Version: cfg.Version, Address: addr}.Encode()
	if err != nil {
		fmt.Fprintf(os.Stderr, "instance %s: encode: %v\n", cfg.Name, err)
		return 1
	}
	reg := etcdv3.NewRegistrar(client, etcdv3.Service{Key: cfg.Key, Value: value, TTL: etcdv3.NewTTLOption(cfg.TTL/3, cfg.TTL)}, logger)
	if err := reg.RegisterContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "instance %s: register: %v\n", cfg.Name, err)
		return 1
	}
	defer reg.Deregister()
	fmt.Println(instanceReady + addr)

	stop, cancelStop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancelStop()
	// The parent holds the other end of stdin; EOF means it is gone.
	orphaned := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(orphaned)
	}()
	select {
	case <-stop.Done():
		return 0
	case <-orphaned:
		return 1
	}
}

// process is an HTTP service in a child process.
type process struct {
	name, addr string
	cmd        *exec.Cmd
	exited     chan struct{} // closed once the child has exited and been waited for
	stderr     itest.Buffer
}

// startProcess starts a child that serves name's HTTP service on a free
// loopback port and registers it under the env's prefix with a lease of
// ttl, waits until it is registered, and kills it when the test ends.
func (e *env) startProcess(name, version string, ttl time.Duration) *process {
	e.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		e.t.Fatalf("find the test binary: %v", err)
	}
	raw, err := json.Marshal(instanceConfig{Etcd: e.endpoints, Key: e.prefix + name, Name: name, Version: version, TTL: ttl})
	if err != nil {
		e.t.Fatal(err)
	}
	p := &process{name: name, exited: make(chan struct{})}
	// The flag keeps a binary whose TestMain lacks the hook from running
	// the tests again in the child.
	p.cmd = exec.Command(exe, "-test.run=^$")
	p.cmd.Env = append(os.Environ(), instanceEnv+"="+string(raw))
	ready := &readyLine{ready: make(chan struct{})}
	p.cmd.Stdout = ready
	p.cmd.Stderr = &p.stderr
	// Nothing is written to stdin: the child takes its EOF for our exit.
	if _, err := p.cmd.StdinPipe(); err != nil {
		e.t.Fatalf("stdin pipe: %v", err)
	}
	if err := p.cmd.Start(); err != nil {
		e.t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	e.t.Cleanup(p.kill)
	timer := time.NewTimer(15 * time.Second)
	defer timer.Stop()
	select {
	case <-ready.ready:
		p.addr = ready.addr
	case <-p.exited:
		e.t.Fatalf("%s exited before serving (code %d): %s", name, p.cmd.ProcessState.ExitCode(), p.stderr.String())
	case <-timer.C:
		e.t.Fatalf("%s not registered after 15s: %s", name, p.stderr.String())
	}
	return p
}

// kill kills the child with SIGKILL and waits until it is gone: its port
// refuses connections, its connections are reset, and its key stays in
// etcd until its lease expires.
func (p *process) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Kill()
	<-p.exited
}

// readyLine takes a child's stdout and closes ready, with addr set, when
// the child prints its ready line.
type readyLine struct {
	ready chan struct{}
	addr  string
	buf   []byte
}

func (w *readyLine) Write(b []byte) (int, error) {
	if w.addr != "" {
		return len(b), nil
	}
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		if addr, ok := strings.CutPrefix(line, instanceReady); ok {
			w.addr = addr
			close(w.ready)
			return len(b), nil
		}
	}
}
