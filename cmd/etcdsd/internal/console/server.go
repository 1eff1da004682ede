package console

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/etcdv3"
)

//go:embed assets
var assets embed.FS

// TokenHeader is the request header that carries the write token.
const TokenHeader = "X-Etcdsd-Token"

// Bounds of requests.
const (
	// maxBody bounds a request's body; the largest valid one is
	// {"weight":1048576}.
	maxBody = 4 << 10
	// maxStreams bounds the live pages served at once.
	maxStreams = 64
	// maxNameLen bounds a service name or instance id in a request.
	maxNameLen = 512
	// probeEvery is how often etcd is probed, and probeTimeout (or
	// RequestTimeout, if shorter) how long a probe waits: the page says
	// etcd cannot be read within probeEvery+probeTimeout of it going
	// silent, where a watch would wait out the client's dial timeout, and
	// says when it answers again.
	probeEvery   = 500 * time.Millisecond
	probeTimeout = time.Second
)

// Config configures a Server. Catalog and Client are required.
type Config struct {
	// Catalog is what the console shows and changes.
	Catalog *catalog.Catalog
	// Client is the etcd client Catalog was made with; the console reads
	// lease TTLs through it.
	Client *etcdv3.EtcdClient
	// AllowWrites enables drain, undrain and weight; without it the
	// console is read-only.
	AllowWrites bool
	// Token must come in the X-Etcdsd-Token header of every write. It is
	// required with AllowWrites, at least 16 characters; NewToken makes
	// one.
	Token string
	// RequestTimeout bounds each request to etcd and each request but the
	// live streams. Default 5 s.
	RequestTimeout time.Duration
	// Endpoints are the etcd endpoints, shown in the page's header.
	Endpoints []string
	// Logger logs writes and errors. Default: no logging.
	Logger log.Logger
}

// Server is the console: a model of the catalog kept by one Watch, and
// the HTTP handler that serves it. Close stops it.
type Server struct {
	cfg     Config
	cli     *clientv3.Client
	model   *model
	leases  *leases
	logger  log.Logger
	streams chan struct{} // a slot per live stream
	handler http.Handler

	cancel    context.CancelFunc
	wg        sync.WaitGroup // the model's goroutine and the prober
	closeOnce sync.Once
	quit      chan struct{} // closed by Close: live streams end
}

// NewToken returns a random write token: 128 bits from crypto/rand, in
// hex.
func NewToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("console: new token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// New starts following the catalog and returns the Server. It fails when
// the configuration is incomplete or etcd cannot be read within ctx (or
// RequestTimeout). The Server follows etcd until Close, or until ctx ends.
func New(ctx context.Context, cfg Config) (*Server, error) {
	switch {
	case cfg.Catalog == nil || cfg.Client == nil:
		return nil, errors.New("console: new: Config.Catalog and Config.Client are required")
	case cfg.AllowWrites && len(cfg.Token) < 16:
		return nil, fmt.Errorf("console: new: writes need a token of at least 16 characters, got %d", len(cfg.Token))
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = etcdv3.DefaultRequestTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = log.NewNopLogger()
	}
	s := &Server{
		cfg:     cfg,
		cli:     cfg.Client.EtcdClient(),
		leases:  newLeases(cfg.Client.EtcdClient(), cfg.RequestTimeout),
		logger:  cfg.Logger,
		streams: make(chan struct{}, maxStreams),
		quit:    make(chan struct{}),
	}
	rctx, rcancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	defer rcancel()
	resp, err := s.cli.Get(rctx, cfg.Catalog.Root(), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
	if err != nil {
		return nil, fmt.Errorf("console: new: read etcd's revision at %q: %w", cfg.Catalog.Root(), err)
	}
	s.model = newModel(resp.Header.Revision, cfg.Catalog.InstanceKey)
	wctx, cancel := context.WithCancel(ctx)
	events, err := cfg.Catalog.Watch(wctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("console: new: %w", err)
	}
	s.cancel = cancel
	s.wg.Add(2)
	go s.follow(events)
	go s.probeUntil(wctx)
	s.handler = s.routes()
	return s, nil
}

// follow applies the Watch's events to the model until the Watch ends.
func (s *Server) follow(events <-chan catalog.Event) {
	defer s.wg.Done()
	for ev := range events {
		if ev.Err != nil {
			level.Warn(s.logger).Log("msg", "console: watch failing, retrying", "kind", ev.Kind, "err", ev.Err)
		}
		s.model.apply(ev, time.Now())
	}
}

// probeUntil reads one key every probeEvery until ctx ends, and tells the
// model whether etcd answered.
func (s *Server) probeUntil(ctx context.Context) {
	defer s.wg.Done()
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := s.probe(ctx)
		if ctx.Err() != nil {
			return
		}
		s.model.probed(err, time.Now())
	}
}

// probe reads one key to learn whether etcd answers.
func (s *Server) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, min(probeTimeout, s.cfg.RequestTimeout))
	defer cancel()
	_, err := s.cli.Get(ctx, s.cfg.Catalog.Root(), clientv3.WithKeysOnly(), clientv3.WithLimit(1))
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %v", min(probeTimeout, s.cfg.RequestTimeout))
	}
	return err
}

// Close ends the live streams, stops following etcd and waits for the
// Server's goroutine. It is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.quit)
		s.cancel()
		s.wg.Wait()
	})
}

// Handler returns the console's HTTP handler: the page and its assets, and
// the JSON API under /api/.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets") // the embedded directory exists
	page := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFileFS(w, r, static, "index.html")
	}
	mux.HandleFunc("GET /{$}", page)
	mux.HandleFunc("GET /services/{service}", page)
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))

	mux.HandleFunc("GET /api/config", s.getConfig)
	mux.HandleFunc("GET /api/services", s.getOverview)
	mux.HandleFunc("GET /api/services/{service}", s.getService)
	mux.HandleFunc("GET /api/services/{service}/leases", s.getLeases)
	mux.HandleFunc("GET /api/log", s.getLog)
	mux.HandleFunc("GET /api/stream", s.stream)

	mux.HandleFunc("POST /api/services/{service}/drain", s.write(opDrain))
	mux.HandleFunc("POST /api/services/{service}/undrain", s.write(opUndrain))
	mux.HandleFunc("POST /api/services/{service}/instances/{id}/drain", s.write(opDrain))
	mux.HandleFunc("POST /api/services/{service}/instances/{id}/undrain", s.write(opUndrain))
	mux.HandleFunc("PUT /api/services/{service}/instances/{id}/weight", s.write(opSetWeight))
	mux.HandleFunc("DELETE /api/services/{service}/instances/{id}/weight", s.write(opClearWeight))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Errorf("no API %s %s", r.Method, r.URL.Path))
	})
	return s.secure(mux)
}

// secure sets the headers every response carries, bounds every request
// but the live stream in time, and refuses headers larger than
// maxHeaderBytes and bodies larger than maxBody.
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if n := headerBytes(r); n > maxHeaderBytes {
			writeError(w, http.StatusRequestHeaderFieldsTooLarge, fmt.Errorf("request line and headers of %d bytes: the limit is %d", n, maxHeaderBytes))
			return
		}
		if r.ContentLength > maxBody {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body of %d bytes: the limit is %d", r.ContentLength, maxBody))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		if r.URL.Path != "/api/stream" {
			ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout+time.Second)
			defer cancel()
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}

// headerBytes is the size of r's request line and headers as sent, which
// maxHeaderBytes bounds: net/http's MaxHeaderBytes lets 4 KiB more through.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2
	n += len("Host: ") + len(r.Host) + 2
	for name, values := range r.Header {
		for _, v := range values {
			n += len(name) + 2 + len(v) + 2
		}
	}
	return n
}

// configView is what the page needs to know of the console.
type configView struct {
	AllowWrites    bool     `json:"allowWrites"`
	TokenHeader    string   `json:"tokenHeader"`
	Endpoints      []string `json:"endpoints"`
	Root           string   `json:"root"`
	PropertiesRoot string   `json:"propertiesRoot"`
	StartRevision  int64    `json:"startRevision"`
}

func (s *Server) getConfig(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, configView{
		AllowWrites: s.cfg.AllowWrites, TokenHeader: TokenHeader, Endpoints: s.cfg.Endpoints,
		Root: s.cfg.Catalog.Root(), PropertiesRoot: s.cfg.Catalog.PropertiesRoot(), StartRevision: s.model.startRev,
	})
}

func (s *Server) getOverview(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.model.overview())
}

// knownService returns the service the request's path names, or writes
// why it cannot be served: 400 for a bad name, 404 for one etcd does not
// hold.
func (s *Server) knownService(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("service")
	if err := checkName("service name", name); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return "", false
	}
	if !s.model.exists(name) {
		writeError(w, http.StatusNotFound, fmt.Errorf("unknown service %q: etcd holds no instance or property of it", name))
		return "", false
	}
	return name, true
}

func (s *Server) getService(w http.ResponseWriter, r *http.Request) {
	name, ok := s.knownService(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.model.serviceView(name))
}

func (s *Server) getLeases(w http.ResponseWriter, r *http.Request) {
	name, ok := s.knownService(w, r)
	if !ok {
		return
	}
	l, err := s.readLeases(r.Context(), name)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) readLeases(ctx context.Context, service string) (Leases, error) {
	return s.leases.read(ctx, service, s.cfg.Catalog.InstanceKey(service, ""), s.model.instanceRevs(service))
}

func (s *Server) getLog(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.model.logSince(0))
}

// checkName refuses service names that cannot be a key segment, before
// anything reads etcd with them; the catalog checks the rest.
func checkName(what, name string) error {
	if err := checkText(what, name); err != nil {
		return err
	}
	if strings.Contains(name, "/") {
		return fmt.Errorf("%s %q contains \"/\"", what, name)
	}
	return nil
}

// checkText refuses what cannot be part of a key: the checks of service
// names but the "/", which instance ids may hold.
func checkText(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty %s", what)
	case len(s) > maxNameLen:
		return fmt.Errorf("%s of %d bytes: the limit is %d", what, len(s), maxNameLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not UTF-8", what, s)
	}
	return nil
}

// apiError is the body of every error response.
type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, apiError{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v) // the client went away if this fails
}
