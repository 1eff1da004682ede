package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdsd/etcdsd/internal/embedetcd"
)

// A grpcProxy is `etcd grpc-proxy start` in a process of its own, on a free
// loopback port, in front of an etcd.
type grpcProxy struct {
	endpoint string
	cmd      *exec.Cmd
	exited   chan struct{} // closed once cmd has exited and been waited for
	log      string        // the proxy's output
}

// startGRPCProxy starts bin's grpc-proxy in front of target, waits until a
// Get through it works, and stops it when the test ends.
func startGRPCProxy(tb testing.TB, bin string, target []string) *grpcProxy {
	tb.Helper()
	ports, err := embedetcd.FreePorts(1)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	p := &grpcProxy{endpoint: fmt.Sprintf("127.0.0.1:%d", ports[0]), exited: make(chan struct{}), log: filepath.Join(dir, "grpc-proxy.log")}
	out, err := os.Create(p.log)
	if err != nil {
		tb.Fatalf("grpc-proxy: %v", err)
	}
	defer out.Close()
	p.cmd = exec.Command(bin, "grpc-proxy", "start",
		"--endpoints="+strings.Join(target, ","),
		"--listen-addr="+p.endpoint,
		// The default, 1.5 MiB, fails the first read of a prefix holding
		// more than about 30,000 instances.
		"--max-send-bytes=2147483647")
	// The proxy may write files (auto TLS, its own data dir) in its
	// working directory; a crash of this process must not leave it running.
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("grpc-proxy: start %s: %v", bin, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	tb.Cleanup(p.stop)
	if err := p.waitServing(30 * time.Second); err != nil {
		tb.Fatalf("grpc-proxy %s in front of %v: %v; its log:\n%s", p.endpoint, target, err, p.logTail())
	}
	return p
}

// waitServing polls a Get through the proxy until it works.
func (p *grpcProxy) waitServing(timeout time.Duration) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{p.endpoint}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("client of %s: %w", p.endpoint, err)
	}
	defer cli.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, prefix)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("exited: %v", p.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("get %s through it: %w after %v", prefix, err, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cpu returns the proxy process's CPU time so far.
func (p *grpcProxy) cpu() (time.Duration, error) {
	return processCPUOf(p.cmd.Process.Pid)
}

// stop asks the proxy to stop, kills it after 10 s, and waits for it.
func (p *grpcProxy) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// logTail returns the last lines of the proxy's output.
func (p *grpcProxy) logTail() string {
	raw, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}
