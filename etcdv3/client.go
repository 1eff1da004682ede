package etcdv3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
)

// Defaults for ClientOptions fields left at zero.
const (
	DefaultDialTimeout    = 3 * time.Second
	DefaultDialKeepAlive  = 3 * time.Second
	DefaultRequestTimeout = 5 * time.Second
)

// Client is a wrapper around the etcd client. It is the interface of go-kit's
// sd/etcdv3 Client, unchanged, so that programs and test fakes written for
// go-kit work here.
//
// The Client returned by NewClient is an *EtcdClient: Instancer reads it at
// a revision and watches from the next one (its fast path), and it has
// Close. Any other Client is read through GetEntries and WatchPrefix.
type Client interface {
	// GetEntries queries the given prefix in etcd and returns a slice
	// containing the values of all keys found, recursively, underneath that
	// prefix.
	GetEntries(prefix string) ([]string, error)

	// WatchPrefix watches the given prefix in etcd for changes. When a change
	// is detected, it will signal on the passed channel. Clients are expected
	// to call GetEntries to update themselves with the latest set of complete
	// values. WatchPrefix will always send an initial sentinel value on the
	// channel after establishing the watch, to ensure that clients always
	// receive the latest set of values. WatchPrefix will block until the
	// context passed to the NewClient constructor is terminated.
	WatchPrefix(prefix string, ch chan struct{})

	// Register a service with etcd.
	Register(s Service) error

	// Deregister a service with etcd.
	Deregister(s Service) error

	// LeaseID returns the lease id created for this service instance
	LeaseID() int64
}

// ClientOptions defines options for the etcd client. All values are optional;
// the zero value of each field selects its documented default.
type ClientOptions struct {
	// Cert and Key are PEM files of a client certificate for mutual TLS;
	// both or neither must be set. CACert is a PEM file of the CA that signed
	// etcd's server certificate; setting it alone enables TLS without a
	// client certificate.
	Cert   string
	Key    string
	CACert string

	// DialTimeout bounds waiting for etcd: while no endpoint answers, a call
	// fails once the connection has been down for this long, with an error
	// naming the endpoints. With grpc.WithBlock() in DialOptions, NewClient
	// itself fails within it. Default 3 s.
	DialTimeout time.Duration
	// DialKeepAlive is the interval of gRPC keepalive pings to etcd, which
	// detect a dead connection (gRPC enforces at least 10 s). Default 3 s.
	DialKeepAlive time.Duration

	// DialOptions are extra gRPC dial options (e.g. interceptors). As in
	// go-kit, grpc.WithBlock() among them makes NewClient fail fast: it
	// returns only once etcd has answered a read, or fails within
	// DialTimeout.
	DialOptions []grpc.DialOption

	// Username and Password authenticate to etcd when Username is set. The
	// etcd client authenticates while connecting, so with credentials
	// NewClient needs etcd to answer within DialTimeout, as go-kit's does.
	Username string
	Password string

	// TLS is a ready TLS configuration; it takes precedence over Cert, Key
	// and CACert.
	TLS *tls.Config

	// RequestTimeout bounds each request made by the go-kit style methods
	// (GetEntries, Register, Deregister), which take no context. Default 5 s.
	RequestTimeout time.Duration

	// Logger receives the client's key-value logs (lease loss and
	// re-registration, among others). Default: no logging.
	Logger log.Logger

	// Metrics receive the client's go-kit metrics: registrations, leases
	// and Instancers. Default: none, at no cost.
	Metrics *Metrics

	// PropertiesRoot is where the operator's properties (etcdsd drain,
	// set-weight; package catalog) live, ending with "/": this client's
	// Instancers of prefix P read them under the root, without its final
	// "/", followed by P. "-" turns them off: the Instancers serve the
	// instances as registered. catalog.New takes it as its default
	// properties root. Default "/etcdsd/properties/".
	PropertiesRoot string
}

// EtcdClient is the Client returned by NewClient. Beyond the go-kit methods
// it offers context-taking variants, the Instancer fast path, and Close.
type EtcdClient struct {
	cli     *clientv3.Client
	ownsCli bool
	opts    ClientOptions
	logger  log.Logger

	ctx    context.Context // ends when the client is closed
	cancel context.CancelFunc
	wg     sync.WaitGroup // the goroutines this client owns

	reach *reachability

	mu        sync.Mutex
	leases    map[leaseKey]*sharedLease
	lastLease int64
	closed    bool
}

var _ Client = (*EtcdClient)(nil)

// NewClient returns a Client of the etcd endpoints in machines. Like
// go-kit's, it is lazy: it returns at once, without waiting for etcd, so a
// service may start before etcd does; a Registrar then registers, and an
// Instancer fills in, once etcd answers. It fails at once for no or
// malformed endpoints and bad TLS files. Calls made while etcd is
// unreachable fail within DialTimeout with an error naming the endpoints
// (and a TLS problem, such as an untrusted certificate, when that is why).
//
// Fail-fast is opt-in, as in go-kit: with grpc.WithBlock() in
// options.DialOptions, NewClient returns only once etcd has answered, or
// fails within DialTimeout (plus at most a second to name a TLS problem)
// naming the endpoints, the user whose credentials were refused, or the
// TLS problem.
//
// As in go-kit, ctx is the client's lifetime, not a dial timeout: the client
// closes when ctx ends (or at Close, whichever is first). Do not pass a
// context that ends before you deregister, such as the one signal.NotifyContext
// cancels on Ctrl-C; pass context.WithoutCancel(ctx) or context.Background()
// and call Close.
func NewClient(ctx context.Context, machines []string, options ClientOptions) (Client, error) {
	c, err := NewEtcdClient(ctx, machines, options)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// NewEtcdClient is NewClient returning the concrete type.
func NewEtcdClient(ctx context.Context, machines []string, options ClientOptions) (*EtcdClient, error) {
	options = withDefaults(options)
	if err := checkEndpoints(machines); err != nil {
		return nil, err
	}
	if err := checkPropertiesRoot(options.PropertiesRoot); err != nil {
		return nil, err
	}
	tlsConf, err := tlsConfig(options)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            machines,
		DialTimeout:          options.DialTimeout,
		DialKeepAliveTime:    options.DialKeepAlive,
		DialKeepAliveTimeout: options.DialTimeout,
		DialOptions:          append([]grpc.DialOption{reconnectParams(options.DialTimeout)}, options.DialOptions...),
		TLS:                  tlsConf,
		Username:             options.Username,
		Password:             options.Password,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, dialError(machines, options, err)
	}
	if blocks(options.DialOptions) {
		if err := probe(ctx, cli, options.DialTimeout); err != nil {
			cli.Close()
			return nil, dialError(machines, options, err)
		}
	}
	return newEtcdClient(ctx, cli, true, options), nil
}

// blocks reports whether opts hold grpc.WithBlock() (or
// grpc.WithReturnConnectionError(), which implies it). The etcd client dials
// with grpc.NewClient, which ignores both, so NewClient keeps go-kit's
// meaning of them itself. Dial options are opaque: each of these is grpc's
// funcDialOption holding a closure of the option's constructor, recognised
// by its name (the closure is copied where the constructor is inlined, so
// its address differs from call to call, but its name ends the same).
// TestBlocksRecognisesGRPCWithBlock guards this against a grpc upgrade.
func blocks(opts []grpc.DialOption) bool {
	for _, o := range opts {
		v := reflect.ValueOf(o)
		if v.Kind() != reflect.Pointer || v.IsNil() {
			continue
		}
		v = v.Elem()
		if v.Type().PkgPath() != "google.golang.org/grpc" || v.Type().Name() != "funcDialOption" || v.NumField() != 1 {
			continue
		}
		if f := v.Field(0); f.Kind() == reflect.Func && !f.IsNil() {
			if fn := runtime.FuncForPC(f.Pointer()); fn != nil && blockingOption.MatchString(fn.Name()) {
				return true
			}
		}
	}
	return false
}

// blockingOption matches the closures of grpc.WithBlock and
// grpc.WithReturnConnectionError, inlined or not: "grpc.WithBlock.func1",
// "pkg.F.WithBlock.func1", or "pkg.F.func1.WithBlock.1" inside a closure.
var blockingOption = regexp.MustCompile(`\.(WithBlock|WithReturnConnectionError)\.(func)?[0-9][0-9.]*$`)

// FromClient wraps an existing clientv3 client. Closing the returned client
// stops what it started (keepalives, watches) but leaves cli open.
func FromClient(cli *clientv3.Client, options ClientOptions) *EtcdClient {
	return newEtcdClient(context.Background(), cli, false, withDefaults(options))
}

func newEtcdClient(parent context.Context, cli *clientv3.Client, owns bool, options ClientOptions) *EtcdClient {
	ctx, cancel := context.WithCancel(context.Background())
	c := &EtcdClient{
		cli:     cli,
		ownsCli: owns,
		opts:    options,
		logger:  options.Logger,
		ctx:     ctx,
		cancel:  cancel,
		leases:  make(map[leaseKey]*sharedLease),
	}
	c.reach = newReachability(cli, options.DialTimeout, func() error {
		return dialError(cli.Endpoints(), options, fmt.Errorf("%w: %w", ErrUnreachable, context.DeadlineExceeded))
	})
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		c.reach.run(ctx)
	}()
	go func() {
		// The go-kit contract: the client lives as long as the context
		// given to NewClient.
		defer c.wg.Done()
		select {
		case <-parent.Done():
			go c.Close() // Close waits for this goroutine; it must not run on it.
		case <-ctx.Done():
		}
	}()
	return c
}

// reconnectParams makes gRPC dial again soon after etcd is back. Its
// defaults wait up to 120 s between attempts after a long outage, and let an
// attempt hang for 20 s behind a link that drops packets, so a client would
// stay cut off long after a partition healed or etcd restarted. Here an
// attempt is bounded by the dial timeout, and the backoff between attempts
// is capped at 2 s, as the Instancer's retries are. DialOptions given by the
// caller come after it and may override it.
func reconnectParams(dialTimeout time.Duration) grpc.DialOption {
	return grpc.WithConnectParams(grpc.ConnectParams{
		Backoff: grpcbackoff.Config{
			BaseDelay:  100 * time.Millisecond,
			Multiplier: 1.6,
			Jitter:     0.2,
			MaxDelay:   2 * time.Second,
		},
		MinConnectTimeout: dialTimeout,
	})
}

func withDefaults(o ClientOptions) ClientOptions {
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.DialKeepAlive <= 0 {
		o.DialKeepAlive = DefaultDialKeepAlive
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.Logger == nil {
		o.Logger = log.NewNopLogger()
	}
	return o
}

// ErrMalformedEndpoint is wrapped by NewClient's error for an endpoint
// etcd's client could not dial, such as a port out of range or none.
var ErrMalformedEndpoint = errors.New("malformed endpoint")

// checkEndpoints refuses what etcd's client would take without a word and
// then dial in vain until the dial timeout: no endpoint, an unknown
// scheme, a missing port (gRPC would dial 443), or a port that is not in
// [1, 65535]. Host names are not resolved: like go-kit's, the client is
// lazy, and a name may resolve later.
func checkEndpoints(machines []string) error {
	if len(machines) == 0 {
		return errors.New("etcdv3: new client: no etcd endpoints given")
	}
	for _, m := range machines {
		if err := checkEndpoint(m); err != nil {
			return fmt.Errorf("etcdv3: new client: %w %q: %s", ErrMalformedEndpoint, m, err)
		}
	}
	return nil
}

// checkEndpoint says what is wrong with one endpoint: host:port, with an
// optional http:// or https://, or unix:// or unixs:// and a socket path,
// the forms etcd's client dials.
func checkEndpoint(m string) error {
	if strings.TrimSpace(m) == "" || strings.ContainsAny(m, " \t\r\n") {
		return errors.New("empty or holds spaces")
	}
	hostport := m
	if scheme, rest, ok := strings.Cut(m, "://"); ok {
		switch scheme {
		case "http", "https":
			hostport = strings.TrimSuffix(rest, "/")
		case "unix", "unixs":
			if rest == "" {
				return errors.New("no socket path")
			}
			return nil
		default:
			return fmt.Errorf("scheme %q: want http, https, unix or unixs", scheme)
		}
	}
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("want host:port: %w", unwrapAddrError(err))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a number in [1, 65535]", port)
	}
	return nil
}

// unwrapAddrError returns the reason of a net.AddrError, without the
// address it repeats.
func unwrapAddrError(err error) error {
	var ae *net.AddrError
	if errors.As(err, &ae) {
		return errors.New(ae.Err)
	}
	return err
}

// probe proves that some endpoint answers. Any answer from etcd counts,
// including "permission denied" for a user whose role does not cover the
// probed key: the point is reachability and valid credentials.
func probe(ctx context.Context, cli *clientv3.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err := cli.Get(ctx, "\x00etcdsd-probe", clientv3.WithSerializable(), clientv3.WithCountOnly())
	if err == nil || errors.Is(err, rpctypes.ErrPermissionDenied) {
		return nil
	}
	return err
}

func dialError(machines []string, o ClientOptions, err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return fmt.Errorf("etcdv3: etcd at %v: authentication failed for user %q: %w", machines, o.Username, err)
	case errors.Is(err, context.DeadlineExceeded):
		if tlsErr := tlsProblem(machines, o); tlsErr != nil {
			return fmt.Errorf("etcdv3: etcd at %v: %w (no endpoint answered within dial timeout %v: %w)", machines, tlsErr, o.DialTimeout, err)
		}
		return fmt.Errorf("etcdv3: etcd at %v: no endpoint answered within dial timeout %v: %w", machines, o.DialTimeout, err)
	}
	return fmt.Errorf("etcdv3: etcd at %v: %w", machines, err)
}

// EtcdClient returns the underlying clientv3 client.
func (c *EtcdClient) EtcdClient() *clientv3.Client { return c.cli }

// Close revokes the leases this client holds (so its registrations leave
// etcd at once rather than at TTL expiry), stops its goroutines and closes
// the connection if NewClient opened it. It is idempotent.
func (c *EtcdClient) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.wg.Wait()
		return nil
	}
	c.closed = true
	leases := make([]*sharedLease, 0, len(c.leases))
	for _, l := range c.leases {
		leases = append(leases, l)
	}
	c.leases = map[leaseKey]*sharedLease{}
	c.mu.Unlock()

	for _, l := range leases {
		l.close(true)
	}
	c.cancel()
	c.wg.Wait()
	if c.ownsCli {
		return c.cli.Close()
	}
	return nil
}

// requestContext bounds a go-kit style call, which takes no context, by the
// request timeout; see bound.
func (c *EtcdClient) requestContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.RequestTimeout)
	ctx, unbound := c.bound(ctx)
	return ctx, func() { unbound(); cancel() }
}

// bound returns ctx, also ended when the client closes and when etcd has
// been unreachable for longer than the dial timeout (at once if it already
// is), so that no call waits on etcd without bound. callError then tells
// why.
func (c *EtcdClient) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(c.ctx, func() { cancel(errClosed) })
	ctx, unbound := c.reach.bound(ctx)
	return ctx, func() {
		unbound()
		stop()
		cancel(context.Canceled)
	}
}

// errClosed ends the calls of a closed client.
var errClosed = errors.New("client closed")

// callError returns err, or the reason ctx (from bound) ended when that is
// what failed the call: etcd unreachable, naming the endpoints, or the
// client closed.
func callError(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	if cause := context.Cause(ctx); errors.Is(cause, ErrUnreachable) || errors.Is(cause, errClosed) {
		return cause
	}
	return err
}

// GetEntries implements Client: the values of all keys under prefix.
func (c *EtcdClient) GetEntries(prefix string) ([]string, error) {
	ctx, cancel := c.requestContext()
	defer cancel()
	if err := ValidatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("etcdv3: read prefix %q: %w", prefix, err)
	}
	_, kvs, err := (&etcdSource{c: c, prefix: prefix, timeout: c.opts.RequestTimeout}).Snapshot(ctx)
	if err != nil {
		return nil, err // Snapshot names the prefix and why
	}
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Value
	}
	return out, nil
}

// WatchPrefix implements Client: it signals ch once at start and after every
// change under prefix, until the client is closed. Prefer NewInstancer,
// which applies changes without re-reading the prefix.
func (c *EtcdClient) WatchPrefix(prefix string, ch chan struct{}) {
	if err := ValidatePrefix(prefix); err != nil {
		level.Error(c.logger).Log("msg", "watch prefix", "err", err)
		return
	}
	select {
	case ch <- struct{}{}:
	case <-c.ctx.Done():
		return
	}
	for c.watchUntilBroken(prefix, ch) {
		// The watch broke (no leader, compaction): signal so that the
		// caller re-reads, then watch again after a pause.
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(c.opts.DialTimeout / 3):
		}
		select {
		case ch <- struct{}{}:
		case <-c.ctx.Done():
			return
		}
	}
}

// watchUntilBroken signals ch on every change; it returns false when the
// client is closed and true when the watch broke.
func (c *EtcdClient) watchUntilBroken(prefix string, ch chan struct{}) bool {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(c.ctx))
	defer cancel()
	for wr := range c.cli.Watch(ctx, prefix, clientv3.WithPrefix()) {
		if wr.Err() != nil {
			return c.ctx.Err() == nil
		}
		select {
		case ch <- struct{}{}:
		case <-c.ctx.Done():
			return false
		}
	}
	return c.ctx.Err() == nil
}

// Register implements Client: it puts s.Key = s.Value under a lease that this
// client keeps alive, and re-grants and re-puts after any lease loss, until
// Deregister or Close. Services with the same TTL share one lease.
func (c *EtcdClient) Register(s Service) error {
	ctx, cancel := c.requestContext()
	defer cancel()
	return c.RegisterContext(ctx, s)
}

// Deregister implements Client: it deletes s.Key and stops keeping it alive;
// the lease is revoked when no other service uses it. A key this client
// keeps is deleted only while it holds this client's lease and value (see
// DeregisterContext).
func (c *EtcdClient) Deregister(s Service) error {
	ctx, cancel := c.requestContext()
	defer cancel()
	return c.DeregisterContext(ctx, s)
}

// LeaseID implements Client: the lease of the most recent registration.
func (c *EtcdClient) LeaseID() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastLease
}
