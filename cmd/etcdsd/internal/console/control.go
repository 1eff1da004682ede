package console

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-kit/log/level"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/property"
)

// op is one of the console's writes: the property it sets or clears.
type op struct {
	name     string // drain, undrain, set-weight, clear-weight
	property string
	set      bool // set the property (else clear it)
}

var (
	opDrain       = op{"drain", catalog.PropDisabled, true}
	opUndrain     = op{"undrain", catalog.PropDisabled, false}
	opSetWeight   = op{"set-weight", catalog.PropWeight, true}
	opClearWeight = op{"clear-weight", catalog.PropWeight, false}
)

// Change is the answer to a successful write.
type Change struct {
	Op       string `json:"op"`
	Service  string `json:"service"`
	ID       string `json:"id,omitempty"` // empty for the whole service
	Property string `json:"property"`
	// Value is the JSON value set; empty when the property was cleared.
	Value string `json:"value,omitempty"`
}

// weightBody is the body of a set-weight.
type weightBody struct {
	Weight json.RawMessage `json:"weight"`
}

// httpError is an error with the status to answer it with.
type httpError struct {
	code int
	err  error
}

func (e *httpError) Error() string { return e.err.Error() }

func fail(code int, format string, args ...any) error {
	return &httpError{code, fmt.Errorf(format, args...)}
}

// write returns the handler of one write: it checks that writes are on,
// the token, the origin and the body, that the instance (or service)
// exists, and then calls the catalog's property API, as the CLI does.
func (s *Server) write(o op) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		change, err := s.doWrite(r, o)
		if err != nil {
			code := http.StatusInternalServerError
			var he *httpError
			if errors.As(err, &he) {
				code = he.code
			}
			level.Info(s.logger).Log("msg", "console: write refused", "op", o.name, "path", r.URL.Path, "remote", r.RemoteAddr, "status", code, "err", err)
			writeError(w, code, err)
			return
		}
		level.Info(s.logger).Log("msg", "console: write", "op", o.name, "service", change.Service, "id", change.ID, "value", change.Value, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusOK, change)
	}
}

func (s *Server) doWrite(r *http.Request, o op) (Change, error) {
	if !s.cfg.AllowWrites {
		return Change{}, fail(http.StatusForbidden, "the console is read-only: start it with --allow-writes to %s", o.name)
	}
	got := r.Header.Get(TokenHeader)
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) != 1 {
		return Change{}, fail(http.StatusForbidden, "missing or wrong %s header: send the token printed when the console started", TokenHeader)
	}
	if err := checkOrigin(r); err != nil {
		return Change{}, err
	}
	body, err := io.ReadAll(r.Body)
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return Change{}, fail(http.StatusRequestEntityTooLarge, "request body over %d bytes", mbe.Limit)
	}
	if err != nil {
		return Change{}, fail(http.StatusBadRequest, "read request body: %v", err)
	}
	service, id := r.PathValue("service"), r.PathValue("id")
	if err := checkName("service name", service); err != nil {
		return Change{}, fail(http.StatusBadRequest, "%v", err)
	}
	if strings.Contains(r.Pattern, "{id}") {
		// An id may hold "/", as go-kit style keys do
		// (/services/app/http://10.0.0.1:80): the page escapes it into one
		// segment of the path, and the catalog takes it.
		if err := checkText("instance id", id); err != nil {
			return Change{}, fail(http.StatusBadRequest, "%v", err)
		}
		if property.ReadsAsServiceWide(id) {
			return Change{}, fail(http.StatusBadRequest, "instance id %q is reserved for service-wide properties: use /api/services/%s/%s", id, service, o.name)
		}
	}
	change := Change{Op: o.name, Service: service, ID: id, Property: o.property}
	switch {
	case o == opSetWeight:
		if change.Value, err = parseWeight(r, body); err != nil {
			return Change{}, err
		}
	case len(bytes.TrimSpace(body)) != 0:
		return Change{}, fail(http.StatusBadRequest, "%s takes no request body, got %d bytes", o.name, len(body))
	case o == opDrain:
		change.Value = "true"
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	if err := s.checkTarget(ctx, change); err != nil {
		return Change{}, err
	}
	if change.Value != "" {
		err = s.cfg.Catalog.SetProperty(ctx, service, id, o.property, change.Value)
	} else {
		err = s.cfg.Catalog.ClearProperty(ctx, service, id, o.property)
	}
	switch {
	case errors.Is(err, catalog.ErrBadName), errors.Is(err, catalog.ErrBadProperty):
		return Change{}, fail(http.StatusBadRequest, "%v", err)
	case err != nil:
		return Change{}, fail(http.StatusServiceUnavailable, "%v", err)
	}
	return change, nil
}

// checkOrigin refuses a request whose Origin header names another site
// than the console's own. For writes, a browser sends no custom header
// cross-site without a preflight the console never answers, so the token
// is the guard and this a second one; for the live stream, which needs no
// token, it is the only one.
func checkOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host != r.Host {
		return fail(http.StatusForbidden, "origin %q is not the console's (%s)", origin, r.Host)
	}
	return nil
}

// parseWeight reads {"weight": <integer in [1, instance.MaxWeight]>}.
func parseWeight(r *http.Request, body []byte) (string, error) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return "", fail(http.StatusUnsupportedMediaType, "set-weight takes Content-Type application/json, got %q", r.Header.Get("Content-Type"))
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var b weightBody
	if err := dec.Decode(&b); err != nil {
		return "", fail(http.StatusBadRequest, "set-weight body %q: want {\"weight\": <integer>}: %v", shorten(string(body)), err)
	}
	if dec.More() {
		return "", fail(http.StatusBadRequest, "set-weight body %q: want one JSON object", shorten(string(body)))
	}
	if b.Weight == nil {
		return "", fail(http.StatusBadRequest, "set-weight body %q: no \"weight\"; to remove an override, DELETE the weight", shorten(string(body)))
	}
	w, err := strconv.ParseInt(string(b.Weight), 10, 64)
	if err != nil || w < 1 || w > instance.MaxWeight {
		return "", fail(http.StatusBadRequest, "weight %s is not an integer in [1, %d]", b.Weight, instance.MaxWeight)
	}
	return strconv.FormatInt(w, 10), nil
}

// checkTarget refuses a write about a service without instances, or an
// instance that is not registered, reading etcd as the CLI does; clearing
// a property that is set is allowed even then (a drain left behind by an
// instance that is gone).
func (s *Server) checkTarget(ctx context.Context, c Change) error {
	instances, err := s.cfg.Catalog.GetService(ctx, c.Service)
	switch {
	case errors.Is(err, catalog.ErrBadName):
		return fail(http.StatusBadRequest, "%v", err)
	case err != nil:
		return fail(http.StatusServiceUnavailable, "%v", err)
	}
	found := len(instances) > 0 && c.ID == ""
	for _, inst := range instances {
		found = found || inst.ID == c.ID
	}
	if found {
		return nil
	}
	if c.Value == "" {
		props, err := s.cfg.Catalog.Properties(ctx, c.Service)
		if err != nil {
			return fail(http.StatusServiceUnavailable, "%v", err)
		}
		for _, p := range props {
			if p.ID == c.ID && p.Name == c.Property {
				return nil
			}
		}
	}
	if len(instances) == 0 {
		return fail(http.StatusNotFound, "unknown service %q: it has no instance in etcd", c.Service)
	}
	return fail(http.StatusNotFound, "service %q has no instance %q", c.Service, c.ID)
}

// shorten keeps error messages readable when an input is huge.
func shorten(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
