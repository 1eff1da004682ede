package etcdv3

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"go.uber.org/goleak"

	"github.com/etcdsd/etcdsd/internal/itest"
)

func waitEvent(t *testing.T, ch <-chan sd.Event, want ...string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.Err == nil && slices.Equal(ev.Instances, want) {
				return
			}
		case <-timeout:
			t.Fatalf("no event with instances %v", want)
		}
	}
}

func TestInstancerAndRegistrarWorkWithAGoKitOnlyClient(t *testing.T) {
	f := newGoKitFake()
	f.put("/p/a", "1:1")
	in, err := NewInstancer(f, "/p/", log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer f.close() // after Stop: the fake's WatchPrefix ends with the fake, as go-kit's with its context
	defer in.Stop()
	ch := make(chan sd.Event, 8)
	in.Register(ch)
	waitEvent(t, ch, "1:1")

	r := NewRegistrar(f, Service{Key: "/p/b", Value: "2:2"}, log.NewNopLogger())
	r.Register()
	waitEvent(t, ch, "1:1", "2:2")
	if st := r.Status(); st.State != StateRegistered || st.LeaseID != 42 {
		t.Fatalf("status = %+v", st)
	}
	f.del("/p/a")
	waitEvent(t, ch, "2:2")
	r.Deregister()
	waitEvent(t, ch)
}

// A go-kit style Client has no keys, so the operator's properties, which
// name instances by key, are not read: its instances come as registered.
func TestInstancerOnAGoKitOnlyClientReadsNoProperties(t *testing.T) {
	f := newGoKitFake()
	f.put("/p/a", "1:1")
	f.put("/etcdsd/properties/p/a/disabled", "true")
	in, err := NewInstancer(f, "/p/", log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	defer in.Stop()
	if got := in.State().Instances; !slices.Equal(got, []string{"1:1"}) {
		t.Fatalf("instances %v, want the one registered", got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for prefix := range f.read {
		if prefix != "/p/" {
			t.Fatalf("the Instancer read %q through the fake", prefix)
		}
	}
}

func TestInstancerOnGoKitClientReportsErrorOnceAndRecovers(t *testing.T) {
	f := newGoKitFake()
	f.put("/p/a", "1:1")
	in, err := newInstancer(t.Context(), f, "/p/", log.NewNopLogger(), true, time.Millisecond, 2*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	defer in.Stop()
	ch := make(chan sd.Event, 8)
	in.Register(ch)
	waitEvent(t, ch, "1:1")
	f.mu.Lock()
	f.failGets = 3
	f.mu.Unlock()
	f.notify()
	select {
	case ev := <-ch:
		if ev.Err == nil || !slices.Equal(ev.Instances, []string{"1:1"}) {
			t.Fatalf("event = %+v, want the error with the last instances", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no error event")
	}
	waitEvent(t, ch, "1:1") // recovered: the error is cleared
}

func TestRegistrarRetriesUntilRegisteredAndStopsOnDeregister(t *testing.T) {
	f := newGoKitFake()
	defer f.close()
	f.regErr = errors.New("fake: etcd down")
	r := NewRegistrar(f, Service{Key: "/p/a", Value: "1:1", TTL: NewTTLOption(MinHeartbeat, time.Second)}, log.NewNopLogger())
	r.Register()
	if st := r.Status(); st.State != StateRegistering || st.Err == nil {
		t.Fatalf("status = %+v, want registering with the error", st)
	}
	itest.Eventually(t, 5*time.Second, "three register attempts", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.regs >= 3
	})
	f.mu.Lock()
	f.regErr = nil
	f.mu.Unlock()
	itest.Eventually(t, 5*time.Second, "registered after the fake recovered", func() bool { return r.State() == StateRegistered })
	r.Deregister()
	if got, _ := f.GetEntries("/p/"); len(got) != 0 {
		t.Fatalf("entries after Deregister = %v", got)
	}
}

// Deregister stops a retry loop that is running: when it returns, the
// goroutine that retries is gone, so no attempt can follow. (Counting the
// attempts over a while after Deregister would prove less: the next retry
// may be up to a heartbeat away.)
func TestRegistrarDeregisterStopsRetrying(t *testing.T) {
	f := newGoKitFake()
	defer f.close()
	f.regErr = errors.New("fake: etcd down")
	before := goleak.IgnoreCurrent()
	r := NewRegistrar(f, Service{Key: "/p/a", Value: "1:1", TTL: NewTTLOption(MinHeartbeat, time.Second)}, log.NewNopLogger())
	r.Register()
	itest.Eventually(t, 5*time.Second, "a retry after the first attempt", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.regs >= 2
	})
	r.Deregister()
	if err := goleak.Find(before); err != nil {
		t.Fatalf("the registrar retries on after Deregister: %v", err)
	}
}

func TestTTLOptionRoundsUpToWholeSeconds(t *testing.T) {
	for _, tc := range []struct {
		ttl  time.Duration
		want int64
	}{{700 * time.Millisecond, 1}, {time.Second, 1}, {1200 * time.Millisecond, 2}, {9 * time.Second, 9}} {
		if got := NewTTLOption(MinHeartbeat, tc.ttl).leaseSeconds(); got != tc.want {
			t.Errorf("TTL %v → %d s, want %d", tc.ttl, got, tc.want)
		}
	}
}

func TestNewTTLOptionRepairsAsGoKit(t *testing.T) {
	for _, tc := range []struct {
		heartbeat, ttl         time.Duration
		wantHeartbeat, wantTTL time.Duration
	}{
		{3 * time.Second, 9 * time.Second, 3 * time.Second, 9 * time.Second},
		{3 * time.Second, 0, 3 * time.Second, 9 * time.Second},
		{3 * time.Second, 3 * time.Second, 3 * time.Second, 9 * time.Second},
		{3 * time.Second, 2 * time.Second, 3 * time.Second, 9 * time.Second},
		{0, time.Second, MinHeartbeat, time.Second},
		{-time.Second, 0, MinHeartbeat, 3 * MinHeartbeat},
		{MinHeartbeat, MinHeartbeat, MinHeartbeat, 3 * MinHeartbeat},
		{200 * time.Millisecond, 2 * time.Second, MinHeartbeat, 2 * time.Second},
	} {
		o := NewTTLOption(tc.heartbeat, tc.ttl)
		if o.Heartbeat() != tc.wantHeartbeat || o.TTL() != tc.wantTTL {
			t.Errorf("NewTTLOption(%v, %v) = (%v, %v), want (%v, %v)", tc.heartbeat, tc.ttl, o.Heartbeat(), o.TTL(), tc.wantHeartbeat, tc.wantTTL)
		}
	}
}

func TestRegisterWarnsOfARepairedTTLNamingBothValues(t *testing.T) {
	f := newGoKitFake()
	defer f.close()
	var buf itest.Buffer
	r := NewRegistrar(f, Service{Key: "/p/a", Value: "1:1", TTL: NewTTLOption(3*time.Second, 2*time.Second)}, log.NewLogfmtLogger(&buf))
	r.Register()
	defer r.Deregister()
	got := buf.String()
	for _, want := range []string{"level=warn", "heartbeat_given=3s", "ttl_given=2s", "heartbeat=3s", "ttl=9s"} {
		if !strings.Contains(got, want) {
			t.Errorf("log %q lacks %q", got, want)
		}
	}
	if n := strings.Count(got, "ttl_given"); n != 1 {
		t.Errorf("repair logged %d times, want once: %q", n, got)
	}
}

func TestRegistrarLogsWhatGoKitLogsWithItsKeysInItsOrder(t *testing.T) {
	f := newGoKitFake()
	defer f.close()
	f.regErr = errors.New("etcd down")
	var buf itest.Buffer
	r := NewRegistrar(f, Service{Key: "/p/a", Value: "1:1"}, log.NewLogfmtLogger(&buf))
	r.Register()
	if got, want := buf.String(), "key=/p/a value=1:1 err=\"etcd down\"\n"; got != want {
		t.Fatalf("after a failed Register, log = %q, want %q", got, want)
	}
	itest.Eventually(t, 5*time.Second, "three register attempts", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.regs >= 3
	})
	if n := strings.Count(buf.String(), "\n"); n != 1 {
		t.Fatalf("retries failing with the same error logged %d lines, want 1: %q", n, buf.String())
	}
	f.mu.Lock()
	f.regErr = errors.New("etcd still down")
	f.mu.Unlock()
	itest.Eventually(t, 5*time.Second, "a warning when the error changes", func() bool {
		return strings.Contains(buf.String(), "level=warn key=/p/a value=1:1 msg=\"register failed, retrying\" err=\"etcd still down\"")
	})
	f.mu.Lock()
	f.regErr = nil
	f.mu.Unlock()
	itest.Eventually(t, 5*time.Second, "go-kit's register line", func() bool {
		return strings.HasSuffix(buf.String(), "key=/p/a value=1:1 action=register\n")
	})
	r.Deregister()
	if !strings.HasSuffix(buf.String(), "key=/p/a value=1:1 action=deregister\n") {
		t.Fatalf("after Deregister, log = %q", buf.String())
	}
}

func TestRegistrarDeregisterWithoutRegisterDeletesTheKeyAsGoKit(t *testing.T) {
	f := newGoKitFake()
	defer f.close()
	f.put("/p/a", "1:1") // left by an earlier run of the service
	var buf itest.Buffer
	r := NewRegistrar(f, Service{Key: "/p/a", Value: "1:1"}, log.NewLogfmtLogger(&buf))
	r.Deregister()
	if got, _ := f.GetEntries("/p/"); len(got) != 0 {
		t.Fatalf("entries after Deregister without Register = %v, want none", got)
	}
	if got, want := buf.String(), "key=/p/a value=1:1 action=deregister\n"; got != want {
		t.Fatalf("log = %q, want %q", got, want)
	}
}

// Pause moves to paused only from registering or registered, in one step:
// a Deregister between its check and its move must win.
func TestPauseRacingDeregisterEndsDeregistered(t *testing.T) {
	f := newGoKitFake()
	defer f.close()
	for i := range 2000 {
		r := NewRegistrar(f, Service{Key: "/p/a", Value: "1:1"}, log.NewNopLogger())
		r.Register()
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); r.Pause(context.Background()) }()
		go func() { defer wg.Done(); r.Deregister() }()
		wg.Wait()
		if st := r.State(); st != StateDeregistered {
			t.Fatalf("iteration %d: state %v after Pause and Deregister, want deregistered", i, st)
		}
	}
}

// A Resume started while Pause is deleting the key puts it only once that
// delete is done, so it ends registered with its key in the store.
func TestResumeDuringPausesDeleteEndsWithTheKey(t *testing.T) {
	f := newGoKitFake()
	defer f.close()
	const key = "/p/a"
	r := NewRegistrar(f, Service{Key: key, Value: "1:1"}, log.NewNopLogger())
	r.Register()
	deleting, release := make(chan struct{}), make(chan struct{})
	f.mu.Lock()
	f.onDeregister = func() { close(deleting); <-release }
	f.mu.Unlock()
	paused := make(chan error, 1)
	go func() { paused <- r.Pause(context.Background()) }()
	<-deleting
	resumed := make(chan error, 1)
	go func() { resumed <- r.Resume(context.Background()) }()
	itest.Eventually(t, 5*time.Second, "Resume started", func() bool { return r.State() != StatePaused })
	close(release)
	for _, c := range []chan error{paused, resumed} {
		if err := <-c; err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	_, exists := f.kv[key]
	f.mu.Unlock()
	if st := r.State(); st != StateRegistered || !exists {
		t.Fatalf("after Pause and a Resume during its delete: state %v, key in the store %v; want registered with the key", st, exists)
	}
}
