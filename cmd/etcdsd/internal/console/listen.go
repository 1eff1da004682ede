package console

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// ErrUnsafeAddress is wrapped by Listen's error for an address beyond
// loopback without TLS or an explicit insecure choice.
var ErrUnsafeAddress = errors.New("serving the console in plain HTTP beyond loopback needs --insecure")

// Bounds of the HTTP server.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	idleTimeout       = time.Minute
	maxHeaderBytes    = 16 << 10
	shutdownWait      = 5 * time.Second
)

// Listen listens on addr (host:port). An address other than a loopback IP
// or "localhost" — a host name, an interface's IP, or no host at all
// (every interface) — is refused unless the console serves TLS (withTLS)
// or the operator chose insecure.
func Listen(addr string, withTLS, insecure bool) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("console: listen %q: %w", addr, err)
	}
	loopback := host == "localhost"
	if ip := net.ParseIP(host); ip != nil {
		loopback = ip.IsLoopback()
	}
	if !loopback && !withTLS && !insecure {
		return nil, fmt.Errorf("console: listen %q: %w (or serve TLS with --listen-cert and --listen-key)", addr, ErrUnsafeAddress)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("console: listen %q: %w", addr, err)
	}
	if loopback && !isLoopback(l.Addr()) && !withTLS && !insecure {
		l.Close()
		return nil, fmt.Errorf("console: listen %q: bound %s: %w", addr, l.Addr(), ErrUnsafeAddress)
	}
	return l, nil
}

// Serve serves the console on l until ctx ends, then ends the live
// streams and shuts down within a few seconds; it closes l. With certFile
// and keyFile it serves HTTPS. On a loopback address, requests must name a
// loopback host, so that no web page reaches the console by pointing a
// name of its own at 127.0.0.1 (DNS rebinding).
func (s *Server) Serve(ctx context.Context, l net.Listener, certFile, keyFile string) error {
	handler := s.handler
	if isLoopback(l.Addr()) {
		handler = loopbackHostsOnly(handler)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      s.cfg.RequestTimeout + 5*time.Second, // streams extend it per write
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			l.Close()
			return fmt.Errorf("console: serve: TLS certificate %q and key %q: %w", certFile, keyFile, err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	served := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			served <- srv.ServeTLS(l, "", "")
		} else {
			served <- srv.Serve(l)
		}
	}()
	select {
	case err := <-served:
		return fmt.Errorf("console: serve on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownWait)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-served
	return nil
}

// loopbackHostsOnly refuses requests whose Host is not a loopback name.
func loopbackHostsOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		ip := net.ParseIP(host)
		if !strings.EqualFold(host, "localhost") && (ip == nil || !ip.IsLoopback()) {
			writeError(w, http.StatusForbidden, fmt.Errorf("host %q: the console on a loopback address answers only to localhost, 127.0.0.1 or [::1]", r.Host))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// isLoopback reports whether addr is a loopback TCP address.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
