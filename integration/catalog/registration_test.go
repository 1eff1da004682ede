package catalog_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

func TestRegisterGeneratesUniqueIDsAcrossThousandRegistrations(t *testing.T) {
	srv := etcdtest.NewServer(t)
	raw := srv.Client(t)
	c := itestclient.New(t, srv.Endpoints())
	cat := newCatalog(t, c)
	const n = 1000
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				reg, err := cat.Register(context.Background(), catalog.Instance{Name: "unique", Address: fmt.Sprintf("10.0.%d.%d:80", i/256, i%256)})
				if err != nil {
					t.Errorf("register %d: %v", i, err)
					return
				}
				ids <- reg.ID()
			}
		})
	}
	wg.Wait()
	close(ids)
	distinct := map[string]bool{}
	for id := range ids {
		if len(id) != 16 {
			t.Fatalf("generated id %q: want 16 hex digits", id)
		}
		distinct[id] = true
	}
	if len(distinct) != n {
		t.Fatalf("%d distinct ids among %d registrations", len(distinct), n)
	}
	resp, err := raw.Get(context.Background(), cat.Root()+"unique/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != n {
		t.Fatalf("%d keys in etcd, want %d", resp.Count, n)
	}
	instances, err := cat.GetService(context.Background(), "unique")
	if err != nil {
		t.Fatal(err)
	}
	for _, inst := range instances {
		if !distinct[inst.ID] || inst.Name != "unique" {
			t.Fatalf("GetService returned %+v, not one of the registered ids", inst)
		}
	}
}

func TestRegisterRejectsBadInputNamingIt(t *testing.T) {
	srv := etcdtest.NewServer(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	for _, tc := range []struct {
		inst catalog.Instance
		want string
	}{
		{catalog.Instance{Address: "10.0.0.1:80"}, "empty service name"},
		{catalog.Instance{Name: "a/b", Address: "10.0.0.1:80"}, `"a/b"`},
		{catalog.Instance{Name: "app", ID: "_", Address: "10.0.0.1:80"}, "reserved"},
		{catalog.Instance{Name: "app", ID: "x y ", Address: "10.0.0.1:80"}, `"x y "`},
		{catalog.Instance{Name: "app"}, "empty address"},
		{catalog.Instance{Name: "app", Address: "10.0.0.1:80", Weight: -3}, "weight -3"},
	} {
		_, err := cat.Register(context.Background(), tc.inst)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Register(%+v) = %v, want error containing %q", tc.inst, err, tc.want)
		}
	}
	if _, err := catalog.New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	var logged strings.Builder
	if _, err := catalog.New(itestclient.New(t, srv.Endpoints()), catalog.WithTTL(time.Second, time.Second), catalog.WithLogger(log.NewLogfmtLogger(&logged))); err != nil {
		t.Errorf("New with TTL == heartbeat: %v, want it repaired as go-kit does", err)
	}
	if !strings.Contains(logged.String(), "ttl_given=1s") || !strings.Contains(logged.String(), "ttl=3s") {
		t.Errorf("New with TTL == heartbeat logged %q, want a warning naming the values given and used", logged.String())
	}
}

func TestPauseLeavesDiscoveryAndResumeComesBack(t *testing.T) {
	srv := etcdtest.NewServer(t)
	raw := srv.Client(t)
	c := itestclient.New(t, srv.Endpoints())
	cat := newCatalog(t, c)
	ctx := context.Background()
	in := newInstancer(t, cat, "pause")
	reg := register(t, cat, catalog.Instance{Name: "pause", ID: "a", Address: "10.0.0.1:80"})
	register(t, cat, catalog.Instance{Name: "pause", ID: "b", Address: "10.0.0.2:80"})
	waitState(t, in, 5*time.Second, "10.0.0.1:80", "10.0.0.2:80")

	for range 2 { // repeatedly
		if err := reg.Pause(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitState(t, in, 2*time.Second, "10.0.0.2:80")
	if st := reg.Status(); st.State != etcdv3.StatePaused {
		t.Fatalf("status after pause = %+v", st)
	}
	if itest.KeyExists(t, raw, reg.Key()) {
		t.Fatal("key still in etcd while paused")
	}
	for range 2 {
		if err := reg.Resume(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitState(t, in, 2*time.Second, "10.0.0.1:80", "10.0.0.2:80")
	if st := reg.Status(); st.State != etcdv3.StateRegistered || st.LeaseID == 0 {
		t.Fatalf("status after resume = %+v", st)
	}

	// After Deregister, Pause and Resume do nothing and the key stays gone.
	if err := reg.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if err := reg.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := reg.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if err := reg.Drain(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	waitState(t, in, 2*time.Second, "10.0.0.2:80")
	if itest.KeyExists(t, raw, reg.Key()) {
		t.Fatal("key back in etcd after Resume following Deregister")
	}
}

func TestDrainLeavesDiscoveryWaitsForInFlightThenDeregisters(t *testing.T) {
	srv := etcdtest.NewServer(t)
	raw := srv.Client(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	in := newInstancer(t, cat, "drain")
	reg := register(t, cat, catalog.Instance{Name: "drain", ID: "a", Address: "10.0.0.1:80"})
	waitState(t, in, 5*time.Second, "10.0.0.1:80")

	release := make(chan struct{})
	started := make(chan struct{})
	handler := reg.Middleware()(func(ctx context.Context, req any) (any, error) {
		close(started)
		<-release
		return "done", nil
	})
	callDone := make(chan struct{})
	go func() {
		defer close(callDone)
		handler(context.Background(), nil)
	}()
	<-started

	drained := make(chan error, 1)
	start := time.Now()
	go func() { drained <- reg.Drain(context.Background(), 10*time.Second) }()
	waitState(t, in, 2*time.Second) // out of discovery at once
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) while a request was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	if itest.KeyExists(t, raw, reg.Key()) || reg.Status().State != etcdv3.StatePaused {
		t.Fatalf("while draining: key in etcd %v, status %+v; want the key gone and paused", itest.KeyExists(t, raw, reg.Key()), reg.Status())
	}
	close(release)
	<-callDone
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Drain did not return after the last request")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Drain took %v, want about the quiet period after the request, far below the 10s grace", took)
	}
	if st := reg.Status(); st.State != etcdv3.StateDeregistered {
		t.Fatalf("status after drain = %+v", st)
	}
}

func TestDrainStopsWaitingWhenContextEnds(t *testing.T) {
	srv := etcdtest.NewServer(t)
	raw := srv.Client(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	reg := register(t, cat, catalog.Instance{Name: "drainctx", ID: "a", Address: "10.0.0.1:80"})
	done := reg.Track() // a request that never ends
	defer done()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := reg.Drain(ctx, time.Minute)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain = %v, want the context's deadline error", err)
	}
	if itest.KeyExists(t, raw, reg.Key()) || reg.Status().State != etcdv3.StateDeregistered {
		t.Fatalf("not deregistered after Drain gave up: %+v", reg.Status())
	}
}
