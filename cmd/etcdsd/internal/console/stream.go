package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Bounds of a live stream.
const (
	// minSendGap coalesces bursts: after sending a view, a stream waits
	// this long before rendering the next, whatever changed meanwhile.
	minSendGap = 50 * time.Millisecond
	// pingEvery keeps proxies and the browser from closing an idle stream.
	pingEvery = 15 * time.Second
	// maxStreamAge ends a stream; the browser's EventSource reconnects.
	maxStreamAge = 30 * time.Minute
	// writeWait bounds each write to a stream.
	writeWait = 10 * time.Second
)

// stream serves /api/stream?service=<name>: Server-Sent Events that keep a
// page up to date. Each change of the model sends the page's whole view,
// "overview" or "service" (coalesced: a slow browser gets the latest view,
// never a backlog), and the new entries of the event log ("log"); a
// service's page also gets its leases ("leases") every leaseRefresh.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	// Before taking a place: any page a user visits could otherwise hold
	// some of the maxStreams.
	if err := checkOrigin(r); err != nil {
		writeError(w, http.StatusForbidden, err)
		return
	}
	service := r.URL.Query().Get("service")
	if service != "" {
		if err := checkName("service name", service); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
	}
	select {
	case s.streams <- struct{}{}:
		defer func() { <-s.streams }()
	default:
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("%d live pages are open already: close some", maxStreams))
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ctx, cancel := context.WithTimeout(r.Context(), maxStreamAge)
	defer cancel()
	st := &sseWriter{w: w, rc: rc}
	st.raw("retry: 1000\n\n")

	var leaseTick <-chan time.Time
	if service != "" {
		t := time.NewTicker(leaseRefresh)
		defer t.Stop()
		leaseTick = t.C
		s.sendLeases(ctx, st, service)
	}
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	var sent uint64
	var logSeq uint64
	first := true
	for st.err == nil {
		version, changed := s.model.watchVersion()
		if first || version != sent {
			first, sent = false, version
			if service == "" {
				st.event("overview", s.model.overview())
			} else {
				st.event("service", s.model.serviceView(service))
			}
			if entries := s.model.logSince(logSeq); len(entries) > 0 {
				logSeq = entries[len(entries)-1].Seq
				st.event("log", entries)
			}
			if !sleep(ctx, s.quit, minSendGap) {
				return
			}
			continue
		}
		select {
		case <-changed:
		case <-leaseTick:
			s.sendLeases(ctx, st, service)
		case <-ping.C:
			st.raw(": ping\n\n")
		case <-ctx.Done():
			return
		case <-s.quit:
			return
		}
	}
}

// sendLeases reads the leases of service's instances and sends them.
func (s *Server) sendLeases(ctx context.Context, st *sseWriter, service string) {
	l, err := s.readLeases(ctx, service)
	if err != nil {
		if ctx.Err() == nil {
			st.event("leases", Leases{Service: service, Leases: map[string]LeaseInfo{}, Error: err.Error()})
		}
		return
	}
	st.event("leases", l)
}

// sleep waits d, and reports false if ctx or quit ended first.
func sleep(ctx context.Context, quit <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-quit:
		return false
	}
}

// sseWriter writes events to one stream, each within writeWait; after an
// error it writes nothing more.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	err error
}

func (st *sseWriter) event(name string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		st.err = fmt.Errorf("encode %s event: %w", name, err)
		return
	}
	st.raw("event: " + name + "\ndata: " + string(data) + "\n\n")
}

func (st *sseWriter) raw(s string) {
	if st.err != nil {
		return
	}
	if err := st.rc.SetWriteDeadline(time.Now().Add(writeWait)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		st.err = err
		return
	}
	if _, err := st.w.Write([]byte(s)); err != nil {
		st.err = err
		return
	}
	st.err = st.rc.Flush()
}
