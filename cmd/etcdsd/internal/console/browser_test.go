package console_test

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/go-kit/kit/endpoint"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/endpointer"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
)

// envScreenshots names the directory (relative to the module root) where
// the browser test writes its screenshots; unset, it writes none.
const envScreenshots = "ETCDSD_SCREENSHOTS"

// envChromium names a Chromium binary to use instead of the one in PATH.
const envChromium = "ETCDSD_CHROMIUM"

// chromiumPath finds headless Chromium, or skips the test saying how to
// install it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(envChromium); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skipf("no Chromium in PATH (chromium, chromium-browser, google-chrome) and $%s unset: "+
		"install it to run the console's browser test, on Debian with `sudo apt-get install -y chromium`", envChromium)
	return ""
}

// newBrowser starts headless Chromium with a fresh profile and the flags
// that keep it off the network, and returns a tab's context; everything
// stops at cleanup.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1360, 860),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// pageProblems collects the page's uncaught exceptions and console errors
// (a Content-Security-Policy violation among them).
func pageProblems(t *testing.T, ctx context.Context) func() []string {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	messages := chromedp.Console(ctx)
	var mu sync.Mutex
	var problems []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Type == chromedp.ConsoleError {
				mu.Lock()
				problems = append(problems, m.String())
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(problems)
	}
}

// traffic sends requests through an endpointer as fast as it answers and
// remembers which instance served each.
type traffic struct {
	mu    sync.Mutex
	calls []call
	stop  context.CancelFunc
	done  chan struct{}
}

type call struct {
	at   time.Time
	addr string
}

func startTraffic(send endpoint.Endpoint) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &traffic{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		for ctx.Err() == nil {
			reply, err := send(ctx, nil)
			if err == nil {
				tr.mu.Lock()
				tr.calls = append(tr.calls, call{time.Now(), reply.(string)})
				tr.mu.Unlock()
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	return tr
}

func (tr *traffic) Stop() {
	tr.stop()
	<-tr.done
}

// since returns the calls made after t.
func (tr *traffic) since(t time.Time) []call {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	i, _ := slices.BinarySearchFunc(tr.calls, t, func(c call, t time.Time) int { return c.at.Compare(t) })
	return slices.Clone(tr.calls[i:])
}

// screenshot writes the page to name under $ETCDSD_SCREENSHOTS, if set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv(envScreenshots)
	if dir == "" {
		return
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(moduleRoot(t), dir)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// waitJS waits until the JavaScript expression is true on the page.
func waitJS(t *testing.T, ctx context.Context, within time.Duration, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(within))); err != nil {
		t.Fatalf("page: not within %v: %s (%s): %v", within, what, expr, err)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

func click(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
}

// TestBrowserDrainsByClickAndFollowsEtcdLive drives the console in headless
// Chromium against a real etcd: the overview, a service page, a weight and
// a drain set by clicking (checked in etcd, on the page, and in the traffic
// of a running endpointer), and an instance registered meanwhile appearing
// without a reload.
func TestBrowserDrainsByClickAndFollowsEtcdLive(t *testing.T) {
	browser := newBrowser(t)
	f := newFixture(t, true, catalog.WithTTL(etcdv3.DefaultHeartbeat, etcdv3.DefaultTTL)) // 9 s leases, as in production
	for _, inst := range []catalog.Instance{
		{Name: "api", ID: "api-1", Version: "v1", Address: "10.0.0.1:8080", Metadata: map[string]string{"zone": "eu-west-1a"}},
		{Name: "api", ID: "api-2", Version: "v2", Address: "10.0.0.2:8080", Metadata: map[string]string{"zone": "eu-west-1b"}},
		{Name: "api", ID: "api-3", Version: "v2", Address: "10.0.0.3:8080", Metadata: map[string]string{"zone": "eu-west-1c"}, Weight: 2},
		{Name: "billing", ID: "billing-1", Version: "v3.1", Address: "10.0.1.1:9000"},
		{Name: "billing", ID: "billing-2", Version: "v3.2", Address: "10.0.1.2:9000"},
		{Name: "search", ID: "search-1", Version: "v7", Address: "10.0.3.1:9200"},
		{Name: "worker", ID: "worker-1", Address: "10.0.2.1:7000"},
		{Name: "worker", ID: "worker-2", Address: "10.0.2.2:7000"},
	} {
		f.register(t, inst)
	}
	if err := f.cat.SetProperty(t.Context(), "worker", "worker-2", catalog.PropDisabled, "true"); err != nil {
		t.Fatal(err)
	}
	base := f.serve(t, "", "")

	// A client of api, as the README builds one: endpointer.New on
	// etcdv3.NewInstancer of the service's prefix, taking requests.
	instancer, err := etcdv3.NewInstancer(f.client, f.cat.InstanceKey("api", ""), itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer instancer.Stop()
	factory := func(addr string) (endpoint.Endpoint, io.Closer, error) {
		return func(context.Context, any) (any, error) { return addr, nil }, nil, nil
	}
	balancer, err := endpointer.New(instancer, factory, itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer balancer.Close()
	tr := startTraffic(balancer.Endpoint())
	defer tr.Stop()

	ctx, cancel := context.WithTimeout(browser, 60*time.Second)
	defer cancel()
	problems := pageProblems(t, ctx)

	// The overview.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1360, 660), chromedp.Navigate(base+"/#token="+testToken)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, 5*time.Second, "the overview lists api with 3 instances",
		`document.querySelector('tr[data-service="api"] td.instances')?.textContent === "3"`)
	if got := text(t, ctx, `tr[data-service="worker"] td.drained`); got != "1" {
		t.Errorf("worker's drained count = %q, want 1", got)
	}
	if got := text(t, ctx, `tr[data-service="api"] td.ejected`); got != "—" {
		t.Errorf("api's ejected cell = %q, want — (ejections live in each client)", got)
	}
	if got := text(t, ctx, `tr[data-service="api"] td.versions`); got != "v1 ×1v2 ×2" {
		t.Errorf("api's versions = %q", got)
	}
	if got := text(t, ctx, "#mode"); got != "writes enabled" {
		t.Errorf("mode = %q: the token in the link was not taken", got)
	}
	// "" is what the page must show, and what a failed Run returns.
	if hash, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.hash`)); err != nil || hash != "" {
		t.Errorf("the token stayed in the address bar: %q (%v)", hash, err)
	}
	screenshot(t, ctx, "console-overview.png")

	// The service page, opened by clicking.
	click(t, ctx, `tr[data-service="api"] a`)
	waitJS(t, ctx, 5*time.Second, "api's page lists its instances with their lease TTLs",
		`location.pathname === "/services/api" && document.querySelectorAll('tr[data-id]').length === 3 &&
		 /^\d+ s \/ 9 s$/.test(document.querySelector('tr[data-id="api-1"] td.lease')?.textContent ?? "")`)

	// A weight, typed and set.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(`tr[data-id="api-1"] input`), "5")); err != nil {
		t.Fatal(err)
	}
	click(t, ctx, `tr[data-id="api-1"] button[data-action="set-weight"]`)
	itest.Eventually(t, 2*time.Second, "the weight in etcd", func() bool {
		v, _ := f.value(t, "/etcdsd/properties/services/api/api-1/weight")
		return v == "5"
	})
	waitJS(t, ctx, time.Second, "api-1's weight shows 5, marked set",
		`document.querySelector('tr[data-id="api-1"] td.weight')?.textContent === "5set"`)

	// A drain, clicked: in etcd, on the page, and out of the endpointer's
	// rotation within a second.
	if n := len(tr.since(time.Now().Add(-time.Second))); n == 0 {
		t.Fatal("no traffic through the endpointer")
	}
	clicked := time.Now()
	click(t, ctx, `tr[data-id="api-2"] button[data-action="drain"]`)
	itest.Eventually(t, 2*time.Second, "the drain in etcd", func() bool {
		v, _ := f.value(t, "/etcdsd/properties/services/api/api-2/disabled")
		return v == "true"
	})
	inEtcd := time.Since(clicked)
	waitJS(t, ctx, time.Second, "api-2 shows drained",
		`document.querySelector('tr[data-id="api-2"]')?.classList.contains("is-drained") &&
		 document.querySelector('tr[data-id="api-2"] td.state')?.textContent === "drained" &&
		 document.querySelector('tr[data-id="api-2"] button[data-action="undrain"]') !== null`)
	onPage := time.Since(clicked)
	time.Sleep(time.Until(clicked.Add(1500 * time.Millisecond)))
	calls := tr.since(clicked)
	last := -1
	for i, c := range calls {
		if c.addr == "10.0.0.2:8080" {
			last = i
		}
	}
	if last == len(calls)-1 {
		t.Fatalf("api-2 still served requests 1.5 s after the drain was clicked (%d calls since)", len(calls))
	}
	out := calls[last+1].at.Sub(clicked) // the first call after the last one api-2 served
	t.Logf("drain clicked in the console: key in etcd after %v, page updated after %v, out of the endpointer's rotation after %v (%d requests since the click, none to api-2 after that)",
		inEtcd.Round(time.Millisecond), onPage.Round(time.Millisecond), out.Round(time.Millisecond), len(calls))
	if out > time.Second {
		t.Errorf("api-2 left the endpointer's rotation %v after the click, want within 1 s", out)
	}

	// An instance registered from outside appears without a reload, and a
	// weight being typed meanwhile survives the redraw.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(`tr[data-id="api-3"] input`), "7")); err != nil {
		t.Fatal(err)
	}
	f.register(t, catalog.Instance{Name: "api", ID: "api-4", Version: "v2", Address: "10.0.0.4:8080", Metadata: map[string]string{"zone": "eu-west-1a"}})
	registered := time.Now()
	waitJS(t, ctx, time.Second, "api-4 appears", `document.querySelector('tr[data-id="api-4"] td.state')?.textContent === "up"`)
	t.Logf("api-4, registered from the test, appeared on the page %v after its key was put", time.Since(registered).Round(time.Millisecond))
	typing := `document.querySelector('tr[data-id="api-3"] input')`
	if ok, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](typing+` === document.activeElement && `+typing+`.value === "7"`)); !ok {
		t.Error("the weight being typed in api-3's row lost its focus or value when api-4 appeared")
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](typing+`.value = ""; `+typing+`.blur(); true`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, 5*time.Second, "the event log shows the register, drain and weight with revisions",
		`[...document.querySelectorAll('#log li')].map(li => li.dataset.action).join(",").startsWith("register,drain,weight")`)
	waitJS(t, ctx, 5*time.Second, "api-4's lease TTL", `/^\d+ s/.test(document.querySelector('tr[data-id="api-4"] td.lease')?.textContent ?? "")`)
	waitJS(t, ctx, 5*time.Second, "the last write's message is gone", `document.getElementById("toast").hidden`)
	screenshot(t, ctx, "console-service.png")

	// Back to the overview, which followed.
	click(t, ctx, `#crumbs a`)
	waitJS(t, ctx, 2*time.Second, "the overview counts api's 4 instances, 1 drained",
		`document.querySelector('tr[data-service="api"] td.instances')?.textContent === "4" &&
		 document.querySelector('tr[data-service="api"] td.drained')?.textContent === "1"`)

	if p := problems(); len(p) != 0 {
		t.Fatalf("the page logged errors:\n%s", strings.Join(p, "\n"))
	}
}

func TestBrowserReadOnlyConsoleShowsNoControls(t *testing.T) {
	browser := newBrowser(t)
	f := newFixture(t, false)
	f.register(t, catalog.Instance{Name: "api", ID: "api-1", Address: "10.0.0.1:8080"})
	base := f.serve(t, "", "")
	ctx, cancel := context.WithTimeout(browser, 30*time.Second)
	defer cancel()
	problems := pageProblems(t, ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/services/api")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, 5*time.Second, "api-1 is listed", `document.querySelector('tr[data-id="api-1"] td.state')?.textContent === "up"`)
	if got := text(t, ctx, "#mode"); got != "read-only" {
		t.Errorf("mode = %q, want read-only", got)
	}
	// 0 is what the page must show, and what a failed Run returns.
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("button[data-action], td.actions").length`)); err != nil || n != 0 {
		t.Errorf("a read-only page shows %d controls (%v)", n, err)
	}
	if p := problems(); len(p) != 0 {
		t.Fatalf("the page logged errors:\n%s", strings.Join(p, "\n"))
	}
}

// The header's "live" is green only while the console reads etcd: when
// etcd goes silent it turns red and says so, with the banner, and is green
// again once etcd answers.
func TestBrowserHeaderSaysWhenEtcdCannotBeRead(t *testing.T) {
	browser := newBrowser(t)
	f, proxy := newProxiedFixture(t)
	base := f.serve(t, "", "")
	ctx, cancel := context.WithTimeout(browser, 30*time.Second)
	defer cancel()
	problems := pageProblems(t, ctx)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	live := `document.getElementById("live").classList.contains("live") && document.getElementById("live-text").textContent === "live"`
	waitJS(t, ctx, 5*time.Second, "the header says live", live)
	proxy.Blackhole()
	waitJS(t, ctx, 3*time.Second, "the header turns red and says etcd is unreachable, under the banner",
		`document.getElementById("live").classList.contains("down") && document.getElementById("live-text").textContent === "etcd unreachable" &&
		 !document.getElementById("banner").hidden`)
	proxy.Unblackhole()
	waitJS(t, ctx, 5*time.Second, "the header says live again, without the banner", live+` && document.getElementById("banner").hidden`)
	if p := problems(); len(p) != 0 {
		t.Fatalf("the page logged errors:\n%s", strings.Join(p, "\n"))
	}
}

// On a service page every row's controls stay inside the instances' card,
// Undrain included (wider than Drain, beside a wider badge), at the widths
// a laptop gives the page.
func TestBrowserRowControlsStayInsideTheirCard(t *testing.T) {
	browser := newBrowser(t)
	f := newFixture(t, true)
	for _, inst := range []catalog.Instance{
		{Name: "api", ID: "api-1", Version: "v1", Address: "10.0.0.1:8080", Metadata: map[string]string{"zone": "eu-west-1a", "rack": "r12"}},
		{Name: "api", ID: "api-2", Version: "v2", Address: "10.0.0.2:8080", Metadata: map[string]string{"zone": "eu-west-1b", "rack": "r07"}},
	} {
		f.register(t, inst)
	}
	for _, p := range [][3]string{{"api-1", catalog.PropDisabled, "true"}, {"api-1", catalog.PropWeight, "5"}} {
		if err := f.cat.SetProperty(t.Context(), "api", p[0], p[1], p[2]); err != nil {
			t.Fatal(err)
		}
	}
	base := f.serve(t, "", "")
	ctx, cancel := context.WithTimeout(browser, 30*time.Second)
	defer cancel()
	problems := pageProblems(t, ctx)
	for _, width := range []int64{1360, 1280, 1180, 1024} {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, 800), chromedp.Navigate(base+"/services/api#token="+testToken)); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, 5*time.Second, "api-1 shows Undrain", `document.querySelector('tr[data-id="api-1"] button[data-action="undrain"]') !== null`)
		outside, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`(() => {
			const card = document.querySelector("table.grid.instances").closest(".card").getBoundingClientRect();
			const out = [];
			for (const el of document.querySelectorAll("table.grid.instances tr[data-id] td.actions button, table.grid.instances tr[data-id] td.actions input")) {
				const r = el.getBoundingClientRect();
				if (r.left < card.left || r.right > card.right) out.push(el.closest("tr").dataset.id + " " + (el.dataset.action || el.tagName) + ": " + Math.round(r.left) + "-" + Math.round(r.right) + " outside " + Math.round(card.left) + "-" + Math.round(card.right));
			}
			return out;
		})()`))
		if err != nil {
			t.Fatal(err)
		}
		if len(outside) > 0 {
			cols, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('tr[data-id="api-1"] td')].map(td => td.className + "=" + Math.round(td.getBoundingClientRect().width))`))
			t.Errorf("at %d px wide, controls outside the card: %q (columns %q)", width, outside, cols)
		}
	}
	if p := problems(); len(p) != 0 {
		t.Fatalf("the page logged errors:\n%s", strings.Join(p, "\n"))
	}
}
