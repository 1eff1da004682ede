package etcdtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/pkg/v3/proxy"
	"go.uber.org/zap"
)

// A Proxy is a TCP proxy on loopback between clients and one etcd endpoint
// that injects network faults: it drops, holds or delays traffic, or cuts
// connections. Point clients at Endpoint instead of the etcd endpoint.
//
// The faults come from etcd's own test proxy (go.etcd.io/etcd/pkg/v3/proxy),
// wrapped in two plain relays that it reaches over unix sockets:
//
//	client → front relay (127.0.0.1) → fault proxy → back relay → etcd
//
// The front relay listens on loopback only (the fault proxy would listen on
// all interfaces) and keeps track of connections, which the fault proxy
// cannot close, for DropConnections. The back relay closes a connection at
// once when etcd is down; the fault proxy would leave it open and silent.
type Proxy struct {
	endpoint string
	dir      string // holds the unix sockets
	front    *relay
	fault    proxy.Server
	back     *relay

	drained   chan struct{} // closed when drainFaultErrors returns
	closeOnce sync.Once
}

// NewProxy starts a proxy on a free loopback port that forwards to target,
// an etcd client endpoint such as "127.0.0.1:2379" or
// "http://127.0.0.1:2379", and closes it when the test ends.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	to, err := targetURL(target)
	if err != nil {
		tb.Fatal(err)
	}
	// Not tb.TempDir: it embeds the test name, and a unix socket path
	// must stay under about 100 bytes.
	dir, err := os.MkdirTemp("", "etcdtest")
	if err != nil {
		tb.Fatalf("etcdtest: new proxy to %s: %v", target, err)
	}
	p := &Proxy{dir: dir, drained: make(chan struct{})}
	faultSock, backSock := filepath.Join(dir, "fault.sock"), filepath.Join(dir, "back.sock")

	backLn, err := net.Listen("unix", backSock)
	if err != nil {
		os.RemoveAll(dir)
		tb.Fatalf("etcdtest: new proxy to %s: %v", target, err)
	}
	p.back = startRelay(backLn, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", to.Host)
	})

	p.fault = proxy.NewServer(proxy.ServerConfig{
		Logger: zap.NewNop(),
		From:   url.URL{Scheme: "unix", Host: faultSock},
		To:     url.URL{Scheme: "unix", Host: backSock},
	})
	select {
	case <-p.fault.Done(): // NewServer closes the proxy when it cannot listen.
		p.back.close()
		os.RemoveAll(dir)
		tb.Fatalf("etcdtest: new proxy to %s: listen on %s: %v", target, faultSock, <-p.fault.Error())
	default:
	}
	go p.drainFaultErrors()

	frontLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		p.back.close()
		p.fault.Close()
		<-p.drained
		os.RemoveAll(dir)
		tb.Fatalf("etcdtest: new proxy to %s: %v", target, err)
	}
	p.front = startRelay(frontLn, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", faultSock)
	})
	p.endpoint = frontLn.Addr().String()
	if strings.Contains(target, "://") {
		p.endpoint = to.Scheme + "://" + p.endpoint
	}
	tb.Cleanup(p.Close)
	return p
}

// targetURL parses "host:port" or "scheme://host:port".
func targetURL(target string) (url.URL, error) {
	u := url.URL{Scheme: "tcp", Host: target}
	if strings.Contains(target, "://") {
		parsed, err := url.Parse(target)
		if err != nil {
			return url.URL{}, fmt.Errorf("etcdtest: new proxy to %q: %w", target, err)
		}
		u = *parsed
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return url.URL{}, fmt.Errorf("etcdtest: new proxy to %q: %w", target, err)
	}
	return u, nil
}

// Endpoint returns the address clients use instead of the target:
// "127.0.0.1:PORT", with the target's scheme if it had one.
func (p *Proxy) Endpoint() string {
	return p.endpoint
}

// Client returns a new client that reaches etcd only through the proxy,
// closed when tb's test ends.
func (p *Proxy) Client(tb testing.TB) *clientv3.Client {
	tb.Helper()
	return newClient(tb, []string{p.endpoint})
}

// Blackhole silently drops all traffic in both directions from now on.
// Connections stay open, so clients see timeouts rather than errors, as
// behind a dead link.
func (p *Proxy) Blackhole() {
	p.fault.BlackholeTx()
	p.fault.BlackholeRx()
}

// Unblackhole lets traffic through again. Bytes dropped mid-stream may have
// broken a connection; clients then dial a new one on their own.
func (p *Proxy) Unblackhole() {
	p.fault.UnblackholeTx()
	p.fault.UnblackholeRx()
}

// Pause holds all traffic in both directions until Unpause, which delivers
// it; connections stay open and nothing is lost.
func (p *Proxy) Pause() {
	p.fault.PauseTx()
	p.fault.PauseRx()
}

// Unpause delivers the held traffic and lets traffic through again.
func (p *Proxy) Unpause() {
	p.fault.UnpauseTx()
	p.fault.UnpauseRx()
}

// SetLatency delays traffic by d in each direction, so a round trip takes
// 2d longer. A d of zero or less clears the latency.
func (p *Proxy) SetLatency(d time.Duration) {
	if d <= 0 {
		p.ClearLatency()
		return
	}
	p.fault.DelayTx(d, 0)
	p.fault.DelayRx(d, 0)
}

// ClearLatency removes the delay set by SetLatency.
func (p *Proxy) ClearLatency() {
	p.fault.UndelayTx()
	p.fault.UndelayRx()
}

// DropConnections closes every connection open through the proxy, so that
// clients see them reset and dial again. New connections are accepted as
// before.
func (p *Proxy) DropConnections() {
	p.front.dropConnections()
}

// Close stops the proxy and closes all its connections. It is safe to call
// more than once; NewProxy registers it with tb.Cleanup.
func (p *Proxy) Close() {
	p.closeOnce.Do(func() {
		// Both relays first: the fault proxy's Close waits for its
		// connections, and a paused one ends only when its far side closes.
		p.front.close()
		p.back.close()
		p.fault.Close()
		<-p.drained
		os.RemoveAll(p.dir)
	})
}

// drainFaultErrors discards the fault proxy's errors until it is closed.
// They are expected (connections reset or closed), and the fault proxy
// blocks its connections once 16 of them are unread.
func (p *Proxy) drainFaultErrors() {
	defer close(p.drained)
	for {
		select {
		case <-p.fault.Error():
		case <-p.fault.Done():
			return
		}
	}
}

// A relay accepts connections, connects each to a new connection from
// dial, and copies between the two until either side closes.
type relay struct {
	ln     net.Listener
	dial   func(context.Context) (net.Conn, error)
	ctx    context.Context // cancelled by close, to end dials
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // both ends of every relayed connection
	closed bool

	wg sync.WaitGroup // the accept loop and every pipe
}

func startRelay(ln net.Listener, dial func(context.Context) (net.Conn, error)) *relay {
	ctx, cancel := context.WithCancel(context.Background())
	r := &relay{ln: ln, dial: dial, ctx: ctx, cancel: cancel, conns: make(map[net.Conn]struct{})}
	r.wg.Add(1)
	go r.accept()
	return r
}

// accept relays every new connection until close closes the listener. On
// loopback and unix sockets, Accept fails for good only then.
func (r *relay) accept() {
	defer r.wg.Done()
	for {
		in, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go r.pipe(in)
	}
}

// pipe connects in to a new connection from dial and copies both ways;
// when either side ends it closes both, so a refused dial closes in at once.
func (r *relay) pipe(in net.Conn) {
	defer r.wg.Done()
	out, err := r.dial(r.ctx)
	if err != nil {
		in.Close()
		return
	}
	if !r.track(in, out) {
		return
	}
	defer r.untrack(in, out)
	outward := make(chan struct{})
	go func() {
		defer close(outward)
		io.Copy(out, in)
		out.Close()
		in.Close()
	}()
	io.Copy(in, out)
	in.Close()
	out.Close()
	<-outward
}

// track records both ends of a relayed connection, or closes them if the
// relay is closed already.
func (r *relay) track(in, out net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		in.Close()
		out.Close()
		return false
	}
	r.conns[in] = struct{}{}
	r.conns[out] = struct{}{}
	return true
}

func (r *relay) untrack(in, out net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, in)
	delete(r.conns, out)
}

// dropConnections closes every relayed connection.
func (r *relay) dropConnections() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.Close()
	}
}

// close stops accepting, closes every relayed connection and waits until
// all of the relay's goroutines have returned.
func (r *relay) close() {
	r.ln.Close()
	r.cancel()
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.dropConnections()
	r.wg.Wait()
}
