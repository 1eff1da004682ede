package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/etcdv3"
)

// envEndpoints names the environment variable that gives the default
// --endpoints.
const envEndpoints = "ETCD_ENDPOINTS"

// defaultTimeout bounds connecting to etcd and each request.
const defaultTimeout = 5 * time.Second

// commonFlags are the flags of every operator command: how to reach etcd,
// the catalog layout, and the output format.
type commonFlags struct {
	endpoints       string
	cacert, cert    string
	tlsKey          string
	user, password  string
	timeout         time.Duration
	output          string
	root, propsRoot string
}

// addCommonFlags defines the common flags on fs. TLS's --key is left out
// when the command uses --key for something else (register); --tls-key
// works everywhere.
func addCommonFlags(fs *flag.FlagSet, keyIsTLS bool) *commonFlags {
	f := &commonFlags{}
	def := os.Getenv(envEndpoints)
	if def == "" {
		def = "127.0.0.1:2379"
	}
	fs.StringVar(&f.endpoints, "endpoints", def, "comma-separated etcd endpoints; $"+envEndpoints+" sets the default")
	fs.StringVar(&f.cacert, "cacert", "", "PEM file of the CA that signed etcd's certificate (enables TLS)")
	fs.StringVar(&f.cert, "cert", "", "PEM file of the client certificate for mutual TLS")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM file of the client certificate's key")
	if keyIsTLS {
		fs.StringVar(&f.tlsKey, "key", "", "PEM file of the client certificate's key (same as --tls-key)")
	}
	fs.StringVar(&f.user, "user", "", "etcd user name")
	fs.StringVar(&f.password, "password", "", "etcd password")
	fs.DurationVar(&f.timeout, "timeout", defaultTimeout, "bound for connecting to etcd and for each request")
	fs.StringVar(&f.output, "o", "table", "output format: table or json")
	fs.StringVar(&f.output, "output", "table", "same as -o")
	fs.StringVar(&f.root, "root", catalog.DefaultRoot, "prefix under which instances live")
	fs.StringVar(&f.propsRoot, "properties-root", catalog.DefaultPropertiesRoot, "prefix under which properties live")
	return f
}

// check validates the common flags after parsing.
func (f *commonFlags) check() error {
	if f.output != "table" && f.output != "json" {
		return usageError{fmt.Errorf("-o %q: want table or json", f.output)}
	}
	if f.timeout <= 0 {
		return usageError{fmt.Errorf("--timeout %v: must be positive", f.timeout)}
	}
	if len(f.endpointList()) == 0 {
		return usageError{fmt.Errorf("--endpoints %q: no endpoint given", f.endpoints)}
	}
	if f.password != "" && f.user == "" {
		return usageError{errors.New("--password given without --user")}
	}
	if (f.cert == "") != (f.tlsKey == "") {
		return usageError{errors.New("--cert and --key (--tls-key) go together")}
	}
	// The library names the files by its options (CACert, Key); say the
	// flag instead.
	for _, file := range []struct{ flag, path string }{{"--cacert", f.cacert}, {"--cert", f.cert}, {"--key", f.tlsKey}} {
		if file.path == "" {
			continue
		}
		r, err := os.Open(file.path)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return fmt.Errorf("%s %q: %w", file.flag, file.path, err)
		}
		r.Close()
	}
	return nil
}

func (f *commonFlags) endpointList() []string {
	var eps []string
	for ep := range strings.SplitSeq(f.endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			eps = append(eps, ep)
		}
	}
	return eps
}

func (f *commonFlags) json() bool { return f.output == "json" }

// connect dials etcd, failing within --timeout when nothing answers: a
// command fails fast (grpc.WithBlock, go-kit's way to ask for it), where a
// service's client waits for etcd.
// A malformed endpoint is bad usage, said at once.
func (f *commonFlags) connect(ctx context.Context) (*etcdv3.EtcdClient, error) {
	c, err := etcdv3.NewEtcdClient(ctx, f.endpointList(), etcdv3.ClientOptions{
		//lint:ignore SA1019 grpc.WithBlock is go-kit's way to ask etcdv3.NewClient to fail fast; NewClient honours it itself
		DialOptions:    []grpc.DialOption{grpc.WithBlock()},
		CACert:         f.cacert,
		Cert:           f.cert,
		Key:            f.tlsKey,
		Username:       f.user,
		Password:       f.password,
		DialTimeout:    f.timeout,
		RequestTimeout: f.timeout,
	})
	if errors.Is(err, etcdv3.ErrMalformedEndpoint) {
		return nil, usageError{err}
	}
	return c, err
}

// catalog dials etcd and returns a catalog over it; close the client when
// done.
func (f *commonFlags) catalog(ctx context.Context) (*etcdv3.EtcdClient, *catalog.Catalog, error) {
	c, err := f.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	cat, err := catalog.New(c, catalog.WithRoot(f.root), catalog.WithPropertiesRoot(f.propsRoot))
	if err != nil {
		c.Close()
		if inner := errors.Unwrap(err); inner != nil {
			err = inner // "root "x" must end with "/"", without "catalog: new: "
		}
		return nil, nil, usageError{err}
	}
	return c, cat, nil
}

// newFlagSet returns a flag set whose -h prints the command's usage line,
// what it does, and its flags.
func newFlagSet(name, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "%s\n\n%s\n\nFlags (the common ones may also come before the command):\n", usageLine(name), summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseArgs parses flags placed before, between or after the positional
// arguments (until "--"), and checks their number.
// A negative number ("-3") is an argument, not an undefined flag, unless
// it is the value of the flag before it ("--timeout -1s").
func parseArgs(fs *flag.FlagSet, args []string, minArgs, maxArgs int, stdout io.Writer) ([]string, error) {
	var positional []string
	for len(args) > 0 {
		if isNegativeNumber(args[0]) {
			positional = append(positional, args[0])
			args = args[1:]
			continue
		}
		n := flagsBeforeNumber(fs, args)
		if err := parseFlags(fs, args[:n], -1, stdout); err != nil {
			return nil, err
		}
		rest := fs.Args()
		consumed := n - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			positional = append(positional, args[consumed:]...)
			break
		}
		if len(rest) == 0 {
			args = args[n:]
			continue
		}
		positional = append(positional, rest[0])
		args = args[consumed+1:]
	}
	switch {
	case len(positional) < minArgs:
		return nil, usageError{fmt.Errorf("want %d argument(s), got %d: %q", minArgs, len(positional), positional)}
	case len(positional) > maxArgs:
		return nil, usageError{fmt.Errorf("unexpected arguments %q", positional[maxArgs:])}
	}
	return positional, nil
}

// isNegativeNumber reports whether arg reads as a negative number, which
// no flag's name starts with.
func isNegativeNumber(arg string) bool {
	return len(arg) > 1 && arg[0] == '-' && arg[1] >= '0' && arg[1] <= '9'
}

// flagsBeforeNumber returns how many of args come before the first
// negative number that is an argument (len(args) if none): one after "--",
// or the value of a flag given as "--name value", is not.
func flagsBeforeNumber(fs *flag.FlagSet, args []string) int {
	for i, a := range args {
		if a == "--" {
			return len(args)
		}
		if i == 0 || !isNegativeNumber(a) {
			continue
		}
		prev := strings.TrimLeft(args[i-1], "-")
		if strings.HasPrefix(args[i-1], "-") && !strings.Contains(prev, "=") {
			if f := fs.Lookup(prev); f != nil {
				if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
					continue // the flag's value
				}
			}
		}
		return i
	}
	return len(args)
}

// requestContext bounds one request by --timeout.
func (f *commonFlags) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, f.timeout)
}
