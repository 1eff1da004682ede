package main

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/cmd/etcdsd/internal/console"
	"github.com/etcdsd/etcdsd/internal/itest"
)

// demo --console serves the console while the demo narrates; a drain sent
// to it during the lingering minute shows in the narrated traffic.
func TestDemoConsoleServesAndNarratesADrainClickedThere(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo takes about 15 s")
	}
	var out, errOut itest.Buffer
	exited := make(chan int, 1)
	go func() {
		exited <- run(context.Background(), []string{"demo", "--console", "--console-linger", "4s"}, &out, &errOut)
	}()
	waitFor := func(what string, within time.Duration, cond func(string) bool) string {
		t.Helper()
		deadline := time.Now().Add(within)
		for !cond(out.String()) {
			if time.Now().After(deadline) {
				t.Fatalf("not within %v: %s; stdout:\n%s\nstderr: %s", within, what, out.String(), errOut.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		return out.String()
	}
	consoleLine := regexp.MustCompile(`Console: (http://127\.0\.0\.1:\d+/)#token=([0-9a-f]{32})`)
	m := consoleLine.FindStringSubmatch(waitFor("the console's URL", 30*time.Second, consoleLine.MatchString))
	base, token := m[1], m[2]
	waitFor("the lingering step", 60*time.Second, func(s string) bool { return strings.Contains(s, "Try the console") })

	req, err := http.NewRequest("POST", base+"api/services/greeter/instances/greeter-1/drain", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(console.TokenHeader, token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("drain greeter-1 in the demo's console: %d", resp.StatusCode)
	}
	drained := time.Now()
	after := len(out.String())
	waitFor("traffic without greeter-1", 3*time.Second, func(s string) bool {
		return strings.Contains(s[after:], "6 requests answered by: greeter-3×3, greeter-4×3.")
	})
	t.Logf("the narration showed the drain clicked in the console after %v", time.Since(drained).Round(time.Millisecond))
	select {
	case code := <-exited:
		if code != 0 || !strings.Contains(out.String(), "Demo finished") {
			t.Fatalf("exit %d; stderr %s\nstdout:\n%s", code, errOut.String(), out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo --console did not end after its linger")
	}
}
