package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/etcdsd/etcdsd/cmd/etcdsd/internal/console"
)

// defaultConsoleAddr is where the console listens unless --listen says
// otherwise: loopback only.
const defaultConsoleAddr = "127.0.0.1:8090"

// consoleStart is what console prints with -o json when it starts.
type consoleStart struct {
	URL         string `json:"url"`
	AllowWrites bool   `json:"allowWrites"`
	Token       string `json:"token,omitempty"`
	TokenHeader string `json:"tokenHeader,omitempty"`
}

// runConsole serves the web console until interrupted.
func runConsole(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("console",
		"Serve a live web console of every service: instances, versions, weights, drains, lease TTLs\n"+
			"and recent changes, updated from etcd's watch. Read-only unless --allow-writes; writes then\n"+
			"need the token printed at start. Binds to loopback unless given TLS files or --insecure.")
	f := addCommonFlags(fs, true)
	listen := fs.String("listen", defaultConsoleAddr, "host:port to serve the console on (port 0: any free port)")
	allowWrites := fs.Bool("allow-writes", false, "enable drain, undrain and weight from the console (each write needs the token printed at start)")
	certFile := fs.String("listen-cert", "", "PEM certificate to serve the console over HTTPS")
	keyFile := fs.String("listen-key", "", "PEM key of --listen-cert")
	insecure := fs.Bool("insecure", false, "allow plain HTTP on a non-loopback --listen address")
	if _, err := parseArgs(fs, args, 0, 0, stdout); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	if (*certFile == "") != (*keyFile == "") {
		return usageError{errors.New("give both --listen-cert and --listen-key, or neither")}
	}
	withTLS := *certFile != ""
	l, err := console.Listen(*listen, withTLS, *insecure)
	if errors.Is(err, console.ErrUnsafeAddress) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	defer l.Close()
	c, cat, err := f.catalog(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var token string
	if *allowWrites {
		if token, err = console.NewToken(); err != nil {
			return err
		}
	}
	srv, err := console.New(ctx, console.Config{
		Catalog: cat, Client: c, AllowWrites: *allowWrites, Token: token,
		RequestTimeout: f.timeout, Endpoints: f.endpointList(),
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	url := consoleURL(l.Addr(), withTLS)
	switch {
	case f.json():
		start := consoleStart{URL: url, AllowWrites: *allowWrites}
		if *allowWrites {
			start.Token, start.TokenHeader = token, console.TokenHeader
		}
		if err := writeJSON(stdout, start); err != nil {
			return err
		}
	case *allowWrites:
		fmt.Fprintf(stdout, "etcdsd console: %s#token=%s\n", url, token)
		fmt.Fprintf(stdout, "  writes enabled: each needs the header %s: %s (the link above carries it)\n", console.TokenHeader, token)
	default:
		fmt.Fprintf(stdout, "etcdsd console: %s\n", url)
		fmt.Fprintln(stdout, "  read-only: start it with --allow-writes to drain and weight from the page")
	}
	if !f.json() {
		fmt.Fprintf(stdout, "  watching %s and %s at %s; Ctrl-C to stop\n", cat.Root(), cat.PropertiesRoot(), strings.Join(f.endpointList(), ","))
	}
	return srv.Serve(ctx, l, *certFile, *keyFile)
}

// consoleURL is the URL to open for a listener's address; an unspecified
// IP (every interface) is shown as the loopback one, which it includes.
func consoleURL(addr net.Addr, withTLS bool) string {
	scheme := "http"
	if withTLS {
		scheme = "https"
	}
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return scheme + "://" + addr.String() + "/"
	}
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return fmt.Sprintf("%s://%s/", scheme, net.JoinHostPort(host, fmt.Sprint(tcp.Port)))
}
