package console_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/cmd/etcdsd/internal/console"
)

func TestReadOnlyConsoleRefusesEveryWrite(t *testing.T) {
	f := newFixture(t, false)
	f.register(t, catalog.Instance{Name: "api", ID: "api-1", Address: "10.0.0.1:80"})
	ts := f.httpServer(t)
	for _, w := range []struct{ method, path, body string }{
		{"POST", "/api/services/api/instances/api-1/drain", ""},
		{"POST", "/api/services/api/instances/api-1/undrain", ""},
		{"POST", "/api/services/api/drain", ""},
		{"PUT", "/api/services/api/instances/api-1/weight", `{"weight":5}`},
		{"DELETE", "/api/services/api/instances/api-1/weight", ""},
	} {
		r := do(t, w.method, ts.URL+w.path, w.body, console.TokenHeader, testToken, "Content-Type", "application/json")
		if msg := r.jsonError(t); r.code != http.StatusForbidden || !strings.Contains(msg, "read-only") || !strings.Contains(msg, "--allow-writes") {
			t.Errorf("%s %s on a read-only console: %d %q; want 403 naming --allow-writes", w.method, w.path, r.code, msg)
		}
	}
	if keys := f.propertyKeys(t); len(keys) != 0 {
		t.Fatalf("a read-only console wrote %q", keys)
	}
	if r := do(t, "GET", ts.URL+"/api/services", ""); r.code != http.StatusOK {
		t.Fatalf("reads on a read-only console: %d %s", r.code, r.body)
	}
}

func TestWritesNeedTheTokenInTheHeader(t *testing.T) {
	f := newFixture(t, true)
	f.register(t, catalog.Instance{Name: "api", ID: "api-1", Address: "10.0.0.1:80"})
	ts := f.httpServer(t)
	url := ts.URL + "/api/services/api/instances/api-1/drain"
	for _, header := range [][]string{
		nil,
		{console.TokenHeader, "wrong"},
		{console.TokenHeader, testToken[:len(testToken)-1]},
		{"Authorization", "Bearer " + testToken},
	} {
		r := do(t, "POST", url, "", header...)
		if msg := r.jsonError(t); r.code != http.StatusForbidden || !strings.Contains(msg, console.TokenHeader) {
			t.Errorf("drain with header %q: %d %q; want 403 naming %s", header, r.code, msg, console.TokenHeader)
		}
	}
	if keys := f.propertyKeys(t); len(keys) != 0 {
		t.Fatalf("writes without the token wrote %q", keys)
	}
	r := do(t, "POST", url, "", console.TokenHeader, testToken)
	if r.code != http.StatusOK {
		t.Fatalf("drain with the token: %d %s", r.code, r.body)
	}
	if v, _ := f.value(t, "/etcdsd/properties/services/api/api-1/disabled"); v != "true" {
		t.Fatalf("disabled = %q after a drain with the token", v)
	}
}

// A page on another site can post a form to the console (no custom header,
// so no token), or a script there can try with a guessed token: the first
// lacks the token, the second comes with the other site's Origin.
func TestCrossSiteRequestsCannotDrain(t *testing.T) {
	f := newFixture(t, true)
	f.register(t, catalog.Instance{Name: "api", ID: "api-1", Address: "10.0.0.1:80"})
	ts := f.httpServer(t)
	url := ts.URL + "/api/services/api/instances/api-1/drain"
	r := do(t, "POST", url, "x=1", "Content-Type", "application/x-www-form-urlencoded", "Origin", "http://evil.example")
	if r.code != http.StatusForbidden {
		t.Errorf("cross-site form post: %d %s; want 403", r.code, r.body)
	}
	r = do(t, "POST", url, "", console.TokenHeader, testToken, "Origin", "http://evil.example")
	if msg := r.jsonError(t); r.code != http.StatusForbidden || !strings.Contains(msg, "evil.example") {
		t.Errorf("write from another origin: %d %q; want 403 naming it", r.code, msg)
	}
	if keys := f.propertyKeys(t); len(keys) != 0 {
		t.Fatalf("cross-site requests wrote %q", keys)
	}
	r = do(t, "POST", url, "", console.TokenHeader, testToken, "Origin", ts.URL)
	if r.code != http.StatusOK {
		t.Fatalf("write from the console's own origin: %d %s", r.code, r.body)
	}
}

func TestBadInputGetsA4xxJSONErrorAndChangesNothing(t *testing.T) {
	f := newFixture(t, true)
	f.register(t, catalog.Instance{Name: "api", ID: "api-1", Address: "10.0.0.1:80"})
	ts := f.httpServer(t)
	weight := "/api/services/api/instances/api-1/weight"
	for _, tc := range []struct {
		method, path, contentType, body string
		code                            int
		want                            string
	}{
		{"POST", "/api/services/nope/instances/a/drain", "", "", 404, `unknown service "nope"`},
		{"POST", "/api/services/nope/drain", "", "", 404, `unknown service "nope"`},
		{"POST", "/api/services/api/instances/api-9/drain", "", "", 404, `service "api" has no instance "api-9"`},
		{"PUT", "/api/services/api/instances/api-9/weight", "application/json", `{"weight":2}`, 404, `no instance "api-9"`},
		{"PUT", weight, "application/json", `{"weight":0}`, 400, "weight 0 is not an integer in [1, 1048576]"},
		{"PUT", weight, "application/json", `{"weight":1048577}`, 400, "weight 1048577 is not an integer"},
		{"PUT", weight, "application/json", `{"weight":1.5}`, 400, "weight 1.5 is not an integer"},
		{"PUT", weight, "application/json", `{"weight":-3}`, 400, "weight -3 is not an integer"},
		{"PUT", weight, "application/json", `{"weight":"5"}`, 400, `weight "5" is not an integer`},
		{"PUT", weight, "application/json", `{"weight":5,"x":1}`, 400, `unknown field "x"`},
		{"PUT", weight, "application/json", `{}`, 400, `no "weight"`},
		{"PUT", weight, "application/json", `{"weight":5}{"weight":6}`, 400, "want one JSON object"},
		{"PUT", weight, "application/json", `not json`, 400, `want {"weight": <integer>}`},
		{"PUT", weight, "text/plain", `{"weight":5}`, 415, "Content-Type application/json"},
		{"POST", "/api/services/api/instances/api-1/drain", "application/json", `{"really":true}`, 400, "drain takes no request body"},
		{"POST", "/api/services/a%2Fb/drain", "", "", 400, `service name "a/b" contains "/"`},
		{"POST", "/api/services/api/instances/_/drain", "", "", 400, `instance id "_" is reserved`},
		{"POST", "/api/services/api/instances/v1%2F_/drain", "", "", 400, `instance id "v1/_" is reserved`},
		{"POST", "/api/services/api/instances/" + strings.Repeat("x", 600) + "/drain", "", "", 400, "instance id of 600 bytes: the limit is 512"},
		{"GET", "/api/services/nope", "", "", 404, `unknown service "nope"`},
		{"GET", "/api/nothing", "", "", 404, "no API GET /api/nothing"},
		{"GET", "/api/stream?service=a/b", "", "", 400, `service name "a/b" contains "/"`},
	} {
		var header []string
		if tc.contentType != "" {
			header = []string{"Content-Type", tc.contentType}
		}
		r := do(t, tc.method, ts.URL+tc.path, tc.body, append(header, console.TokenHeader, testToken)...)
		if msg := r.jsonError(t); r.code != tc.code || !strings.Contains(msg, tc.want) {
			t.Errorf("%s %s %s: %d %q; want %d and %q", tc.method, tc.path, tc.body, r.code, msg, tc.code, tc.want)
		}
	}
	if keys := f.propertyKeys(t); len(keys) != 0 {
		t.Fatalf("bad input wrote %q", keys)
	}
}

func TestRequestBodiesAreBounded(t *testing.T) {
	f := newFixture(t, true)
	f.register(t, catalog.Instance{Name: "api", ID: "api-1", Address: "10.0.0.1:80"})
	ts := f.httpServer(t)
	huge := `{"weight":5,"pad":"` + strings.Repeat("x", 8<<10) + `"}`
	r := do(t, "PUT", ts.URL+"/api/services/api/instances/api-1/weight", huge, console.TokenHeader, testToken, "Content-Type", "application/json")
	if msg := r.jsonError(t); r.code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "4096") {
		t.Errorf("8 KiB body: %d %q; want 413 naming the limit", r.code, msg)
	}
	// Without a Content-Length (chunked), the limit holds while reading.
	req, err := http.NewRequest("POST", ts.URL+"/api/services/api/instances/api-1/drain", strings.NewReader(strings.Repeat(" ", 8<<10)))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1
	req.Header.Set(console.TokenHeader, testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("8 KiB chunked body: %d; want 413", resp.StatusCode)
	}
	if keys := f.propertyKeys(t); len(keys) != 0 {
		t.Fatalf("oversized requests wrote %q", keys)
	}
}

func TestWritesGoThroughTheCatalogPropertyAPI(t *testing.T) {
	f := newFixture(t, true)
	f.register(t, catalog.Instance{Name: "api", ID: "api-1", Address: "10.0.0.1:80"})
	ts := f.httpServer(t)
	auth := []string{console.TokenHeader, testToken}
	inst := ts.URL + "/api/services/api/instances/api-1"
	props := "/etcdsd/properties/services/api/"
	steps := []struct {
		method, path, body string
		key, want          string // want "" means absent
	}{
		{"POST", inst + "/drain", "", props + "api-1/disabled", "true"},
		{"POST", inst + "/undrain", "", props + "api-1/disabled", ""},
		{"PUT", inst + "/weight", `{"weight":7}`, props + "api-1/weight", "7"},
		{"DELETE", inst + "/weight", "", props + "api-1/weight", ""},
		{"POST", ts.URL + "/api/services/api/drain", "", props + "_/disabled", "true"},
		{"POST", ts.URL + "/api/services/api/undrain", "", props + "_/disabled", ""},
	}
	for _, s := range steps {
		r := do(t, s.method, s.path, s.body, append(auth, "Content-Type", "application/json")...)
		if r.code != http.StatusOK || !strings.HasPrefix(r.contentType, "application/json") {
			t.Fatalf("%s %s: %d %s", s.method, s.path, r.code, r.body)
		}
		v, ok := f.value(t, s.key)
		if (s.want == "" && ok) || v != s.want {
			t.Fatalf("after %s %s: %s = %q (present %v), want %q", s.method, s.path, s.key, v, ok, s.want)
		}
	}
	// A drain left behind by an instance that is gone can be cleared.
	if err := f.cat.SetProperty(t.Context(), "api", "gone-1", catalog.PropDisabled, "true"); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "POST", ts.URL+"/api/services/api/instances/gone-1/undrain", "", auth...); r.code != http.StatusOK {
		t.Fatalf("undrain of a drained instance that is gone: %d %s", r.code, r.body)
	}
	if _, ok := f.value(t, props+"gone-1/disabled"); ok {
		t.Fatal("the left-behind drain is still set")
	}
}

// go-kit programs register prefix + address, such as
// /services/api/http://10.0.0.1:80: the page sends such an id escaped in
// the path, and the console drains and weighs it like any other.
func TestWritesReachInstancesRegisteredGoKitStyle(t *testing.T) {
	f := newFixture(t, true)
	const id = "http://10.0.0.1:80"
	if _, err := f.raw.Put(t.Context(), f.cat.InstanceKey("api", id), id); err != nil {
		t.Fatal(err)
	}
	ts := f.httpServer(t)
	auth := []string{console.TokenHeader, testToken, "Content-Type", "application/json"}
	inst := ts.URL + "/api/services/api/instances/" + url.PathEscape(id)
	props := "/etcdsd/properties/services/api/" + id
	for _, s := range []struct {
		method, path, body string
		key, want          string // want "" means absent
	}{
		{"POST", inst + "/drain", "", props + "/disabled", "true"},
		{"PUT", inst + "/weight", `{"weight":7}`, props + "/weight", "7"},
		{"POST", inst + "/undrain", "", props + "/disabled", ""},
		{"DELETE", inst + "/weight", "", props + "/weight", ""},
	} {
		r := do(t, s.method, s.path, s.body, auth...)
		if r.code != http.StatusOK {
			t.Fatalf("%s %s: %d %s", s.method, s.path, r.code, r.body)
		}
		var c console.Change
		if !decode(t, r.body, &c) || c.ID != id {
			t.Fatalf("%s %s answered %s, want the change of %q", s.method, s.path, r.body, id)
		}
		if v, ok := f.value(t, s.key); (s.want == "" && ok) || v != s.want {
			t.Fatalf("after %s %s: %s = %q (present %v), want %q", s.method, s.path, s.key, v, ok, s.want)
		}
	}
}
