package console_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/cmd/etcdsd/internal/console"
	"github.com/etcdsd/etcdsd/internal/itest"
)

func TestOverviewStreamSendsEachChangeWithinASecond(t *testing.T) {
	f := newFixture(t, false)
	f.register(t, catalog.Instance{Name: "api", ID: "api-1", Version: "v1", Address: "10.0.0.1:80"})
	ts := f.httpServer(t)
	events := openStream(t, ts.URL, "")
	next(t, events, "overview", 5*time.Second, func(o console.Overview) bool {
		return len(o.Services) == 1 && o.Services[0].Instances == 1
	})

	start := time.Now()
	f.register(t, catalog.Instance{Name: "api", ID: "api-2", Version: "v2", Address: "10.0.0.2:80"})
	// The view and the log entry come in either order: a view rendered
	// just before the change is followed by the entries up to it.
	var o console.Overview
	var e console.LogEntry
	deadline := time.After(time.Second)
	for len(o.Services) != 1 || o.Services[0].Instances != 2 || e.ID != "api-2" {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("stream ended")
			}
			switch ev.name {
			case "overview":
				decode(t, ev.data, &o)
			case "log":
				var entries []console.LogEntry
				decode(t, ev.data, &entries)
				for _, le := range entries {
					if le.ID == "api-2" {
						e = le
					}
				}
			}
		case <-deadline:
			t.Fatalf("within 1 s of a registration: overview %+v, log entry %+v", o, e)
		}
	}
	t.Logf("a registration reached the overview stream in %v", time.Since(start))
	want := []console.VersionCount{{Version: "v1", Count: 1}, {Version: "v2", Count: 1}}
	if s := o.Services[0]; !slices.Equal(s.Versions, want) || s.InRotation != 2 || s.Drained != 0 {
		t.Fatalf("overview of api = %+v, want versions %v, 2 in rotation", s, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := f.raw.Get(ctx, f.cat.InstanceKey("api", "api-2"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("read api-2: %v", err)
	}
	if e.Action != "register" || e.Service != "api" || e.Revision != resp.Kvs[0].ModRevision {
		t.Fatalf("log entry %+v, want register of api/api-2 at revision %d", e, resp.Kvs[0].ModRevision)
	}

	if err := f.cat.SetProperty(ctx, "api", "api-1", catalog.PropDisabled, "true"); err != nil {
		t.Fatal(err)
	}
	next(t, events, "overview", time.Second, func(o console.Overview) bool {
		return len(o.Services) == 1 && o.Services[0].Drained == 1 && o.Services[0].InRotation == 1
	})
}

func TestServiceStreamShowsEffectiveWeightDrainAndLeaseTTL(t *testing.T) {
	f := newFixture(t, false)
	f.register(t, catalog.Instance{Name: "api", ID: "api-1", Address: "10.0.0.1:80", Weight: 2, Metadata: map[string]string{"zone": "a"}})
	f.register(t, catalog.Instance{Name: "api", ID: "api-2", Address: "10.0.0.2:80"})
	f.register(t, catalog.Instance{Name: "api", ID: "api-3", Address: "10.0.0.3:80"})
	ts := f.httpServer(t)
	events := openStream(t, ts.URL, "api")
	ctx := t.Context()
	for _, p := range []catalog.Property{
		{ID: "api-1", Name: catalog.PropWeight, Value: "5"},
		{ID: "api-2", Name: catalog.PropDisabled, Value: "true"},
		{ID: "", Name: catalog.PropWeight, Value: "3"},
	} {
		if err := f.cat.SetProperty(ctx, "api", p.ID, p.Name, p.Value); err != nil {
			t.Fatal(err)
		}
	}
	v := next(t, events, "service", 2*time.Second, func(v console.ServiceView) bool {
		return len(v.Instances) == 3 && v.Instances[1].Drained && len(v.Properties) == 1
	})
	a1, a2, a3 := v.Instances[0], v.Instances[1], v.Instances[2]
	if a1.Weight != 5 || a1.RegisteredWeight != 2 || a1.WeightOverride != "instance" || a1.WeightRevision == 0 || a1.Metadata["zone"] != "a" {
		t.Errorf("api-1 = %+v, want weight 5 set on the instance over a registered 2", a1)
	}
	if !a2.Drained || a2.DrainedBy != "instance" || a2.DrainRevision <= a2.Revision || a2.Changed != a3.WeightRevision {
		t.Errorf("api-2 = %+v, want drained by its own property, changed last by the service-wide weight", a2)
	}
	if a3.Weight != 3 || a3.WeightOverride != "service" || a3.Drained {
		t.Errorf("api-3 = %+v, want the service-wide weight 3", a3)
	}
	if v.Summary.Drained != 1 || v.Summary.InRotation != 2 || a1.Key != "/services/api/api-1" {
		t.Errorf("summary %+v, key %q", v.Summary, a1.Key)
	}
	l := next(t, events, "leases", 5*time.Second, func(l console.Leases) bool { return len(l.Leases) == 3 })
	for id, info := range l.Leases {
		if info.ID == "" || info.TTL < 1 || info.TTL > 3 || info.Granted != 3 || info.Error != "" {
			t.Errorf("lease of %s = %+v, want a TTL in [1, 3] of a 3 s lease", id, info)
		}
	}
	// A service-wide drain takes every instance out but one pinned by its
	// own disabled=false.
	if err := f.cat.SetProperty(ctx, "api", "", catalog.PropDisabled, "true"); err != nil {
		t.Fatal(err)
	}
	if err := f.cat.SetProperty(ctx, "api", "api-3", catalog.PropDisabled, "false"); err != nil {
		t.Fatal(err)
	}
	v = next(t, events, "service", 2*time.Second, func(v console.ServiceView) bool { return v.Instances[2].Pinned })
	if !v.Summary.ServiceDrained || v.Instances[0].DrainedBy != "service" || v.Summary.InRotation != 1 {
		t.Fatalf("after a service drain: %+v", v)
	}
}

func TestLeasesAreReadOnDemandForKnownServicesOnly(t *testing.T) {
	f := newFixture(t, false)
	f.register(t, catalog.Instance{Name: "api", ID: "api-1", Address: "10.0.0.1:80"})
	if _, err := f.raw.Put(t.Context(), "/services/api/by-hand", "10.0.0.9:80"); err != nil {
		t.Fatal(err)
	}
	ts := f.httpServer(t)
	events := openStream(t, ts.URL, "api")
	next(t, events, "service", 2*time.Second, func(v console.ServiceView) bool { return len(v.Instances) == 2 })
	var l console.Leases
	itest.Eventually(t, 2*time.Second, "both leases", func() bool {
		r := do(t, "GET", ts.URL+"/api/services/api/leases", "")
		return r.code == 200 && decode(t, r.body, &l) && len(l.Leases) == 2
	})
	if l.Leases["by-hand"].ID != "" || l.Leases["api-1"].TTL < 1 {
		t.Fatalf("leases = %+v, want none for the key put by hand and a TTL for api-1", l)
	}
	if r := do(t, "GET", ts.URL+"/api/services/nope/leases", ""); r.code != 404 {
		t.Fatalf("leases of an unknown service: %d %s", r.code, r.body)
	}
}

// streamStatus opens /api/stream with the given Origin header (none when
// empty), returns the status and the body when it is not a stream, and
// closes it.
func streamStatus(t *testing.T, base, origin string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") == "text/event-stream" {
		return resp.StatusCode, ""
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// Any page a user visits can open an EventSource on the console: it must
// not get the stream, so that foreign pages cannot hold its few places
// (maxStreams) and leave the console's own pages without one. Browsers
// send such a request with the page's Origin ("null" from a sandbox).
func TestStreamRefusesCrossSiteOrigins(t *testing.T) {
	f := newFixture(t, false)
	ts := f.httpServer(t)
	for _, origin := range []string{"http://evil.example", "null"} {
		code, body := streamStatus(t, ts.URL, origin)
		if code != http.StatusForbidden || !strings.Contains(body, origin) {
			t.Fatalf("stream from origin %q: %d %q; want 403 naming it", origin, code, body)
		}
	}
	for _, origin := range []string{ts.URL, ""} {
		if code, body := streamStatus(t, ts.URL, origin); code != http.StatusOK {
			t.Fatalf("stream from origin %q: %d %s; want the stream", origin, code, body)
		}
	}
}
