package console_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/cmd/etcdsd/internal/console"
	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// testToken is the write token of the fixtures that allow writes.
const testToken = "0123456789abcdef0123456789abcdef"

// fixture is a real etcd, a catalog on it, and a console Server.
type fixture struct {
	etcd   *etcdtest.Server
	raw    *clientv3.Client
	client *etcdv3.EtcdClient
	cat    *catalog.Catalog
	srv    *console.Server
}

// newFixture starts etcd and a console on it; writes are allowed with
// testToken when allowWrites. Registrations have a 3 s lease unless opts
// say otherwise.
func newFixture(t *testing.T, allowWrites bool, opts ...catalog.Option) *fixture {
	t.Helper()
	f := &fixture{etcd: etcdtest.NewServer(t)}
	f.raw = f.etcd.Client(t)
	f.client = itestclient.New(t, f.etcd.Endpoints())
	opts = append([]catalog.Option{catalog.WithTTL(time.Second, 3*time.Second), catalog.WithLogger(itest.Logger(t))}, opts...)
	cat, err := catalog.New(f.client, opts...)
	if err != nil {
		t.Fatal(err)
	}
	f.cat = cat
	cfg := console.Config{Catalog: cat, Client: f.client, AllowWrites: allowWrites, Endpoints: f.etcd.Endpoints(), Logger: itest.Logger(t)}
	if allowWrites {
		cfg.Token = testToken
	}
	srv, err := console.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	f.srv = srv
	return f
}

// register registers inst and deregisters it at cleanup.
func (f *fixture) register(t *testing.T, inst catalog.Instance) *catalog.Registration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reg, err := f.cat.Register(ctx, inst)
	if err != nil {
		t.Fatalf("register %+v: %v", inst, err)
	}
	t.Cleanup(func() { reg.Deregister(context.Background()) })
	return reg
}

// httpServer serves the console's handler on a loopback httptest server.
func (f *fixture) httpServer(t *testing.T) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(f.srv.Handler())
	t.Cleanup(ts.Close)
	return ts
}

// value returns the value of key in etcd, and whether it exists.
func (f *fixture) value(t *testing.T, key string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := f.raw.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return "", false
	}
	return string(resp.Kvs[0].Value), true
}

// propertyKeys returns every key under the properties root.
func (f *fixture) propertyKeys(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := f.raw.Get(ctx, f.cat.PropertiesRoot(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

// response is a decoded answer of the console.
type response struct {
	code        int
	contentType string
	body        string
}

// do sends one request; header holds pairs of names and values.
func do(t *testing.T, method, url, body string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: string(b)}
}

// jsonError returns the "error" of a JSON error body, failing the test if
// the body is not one.
func (r response) jsonError(t *testing.T) string {
	t.Helper()
	var e struct{ Error string }
	if !strings.HasPrefix(r.contentType, "application/json") || json.Unmarshal([]byte(r.body), &e) != nil || e.Error == "" {
		t.Fatalf("status %d: want a JSON error body, got %q (%s)", r.code, r.body, r.contentType)
	}
	return e.Error
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	name, data string
}

// openStream opens /api/stream (of service, if not empty) and returns its
// events; the stream is closed at cleanup.
func openStream(t *testing.T, base, service string) <-chan sseEvent {
	t.Helper()
	url := base + "/api/stream"
	if service != "" {
		url += "?service=" + service
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		resp.Body.Close()
		t.Fatalf("stream: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan sseEvent, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			case line == "" && ev.name != "":
				select {
				case events <- ev:
				case <-ctx.Done():
					return
				}
				ev = sseEvent{}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	return events
}

// next returns the next event named name whose data satisfies cond,
// failing the test after within.
func next[T any](t *testing.T, events <-chan sseEvent, name string, within time.Duration, cond func(T) bool) T {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("stream ended while waiting for a %q event", name)
			}
			if ev.name != name {
				continue
			}
			var v T
			if err := json.Unmarshal([]byte(ev.data), &v); err != nil {
				t.Fatalf("%s event %q: %v", name, ev.data, err)
			}
			if cond(v) {
				return v
			}
		case <-deadline:
			t.Fatalf("no matching %q event within %v", name, within)
		}
	}
}

// decode unmarshals body into v and reports whether it could.
func decode(t *testing.T, body string, v any) bool {
	t.Helper()
	return json.Unmarshal([]byte(body), v) == nil
}
