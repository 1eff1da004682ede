package catalog_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/grpcsd"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
	"github.com/etcdsd/etcdsd/internal/pipeline"
)

func TestInstancerHonoursPropertiesLive(t *testing.T) {
	srv := etcdtest.NewServer(t)
	raw := srv.Client(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	ctx := context.Background()
	const svc = "props"
	// Set before the Instancer starts: the first state already honours it.
	if err := cat.SetProperty(ctx, svc, "a", catalog.PropDisabled, "true"); err != nil {
		t.Fatal(err)
	}
	register(t, cat, catalog.Instance{Name: svc, ID: "a", Address: "10.0.0.1:80"})
	register(t, cat, catalog.Instance{Name: svc, ID: "b", Address: "10.0.0.2:80", Weight: 2})
	put(t, raw, cat.InstanceKey(svc, "c"), "10.0.0.3:80") // plain value
	in := newInstancer(t, cat, svc)
	waitState(t, in, 2*time.Second, "10.0.0.2:80", "10.0.0.3:80")

	if err := cat.ClearProperty(ctx, svc, "a", catalog.PropDisabled); err != nil {
		t.Fatal(err)
	}
	ev := waitState(t, in, time.Second, "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")
	if !slices.Contains(ev.Instances, "10.0.0.3:80") {
		t.Fatalf("plain value rewritten without an override: %v", ev.Instances)
	}

	// A weight override changes the typed weight of the Feed, never the
	// value go-kit subscribers get.
	if err := cat.SetProperty(ctx, svc, "b", catalog.PropWeight, "7"); err != nil {
		t.Fatal(err)
	}
	itest.Eventually(t, time.Second, "weight 7 on b", func() bool { return weightOf(t, in, "10.0.0.2:80") == 7 })
	if got := in.State().Instances; !slices.Contains(got, "10.0.0.3:80") || slices.ContainsFunc(got, func(v string) bool { return strings.Contains(v, `"weight":7`) }) {
		t.Fatalf("go-kit values %v: want them as registered", got)
	}
	if err := cat.SetProperty(ctx, svc, "", catalog.PropWeight, "4"); err != nil { // service-wide
		t.Fatal(err)
	}
	itest.Eventually(t, time.Second, "weight 4 on c, b keeps 7", func() bool {
		return weightOf(t, in, "10.0.0.3:80") == 4 && weightOf(t, in, "10.0.0.1:80") == 4 && weightOf(t, in, "10.0.0.2:80") == 7
	})
	if err := cat.ClearProperty(ctx, svc, "b", catalog.PropWeight); err != nil {
		t.Fatal(err)
	}
	itest.Eventually(t, time.Second, "b back to the service-wide 4", func() bool { return weightOf(t, in, "10.0.0.2:80") == 4 })

	// Service-wide drain, with one instance kept in by its own property.
	if err := cat.SetProperty(ctx, svc, "c", catalog.PropDisabled, "false"); err != nil {
		t.Fatal(err)
	}
	if err := cat.SetProperty(ctx, svc, "", catalog.PropDisabled, "true"); err != nil {
		t.Fatal(err)
	}
	waitState(t, in, time.Second, "10.0.0.3:80")

	// A malformed property written behind the catalog's back is ignored.
	put(t, raw, "/etcdsd/properties/services/"+svc+"/_/disabled", "maybe")
	waitState(t, in, time.Second, "10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80")
}

// weightOf returns the typed weight the Instancer's Feed gives the
// instance at address, or -1 if it is absent.
func weightOf(t testing.TB, in interface{ Feed() *pipeline.Feed }, address string) int {
	for _, ch := range in.Feed().Contents() {
		if ch.Instance.Address == address {
			return ch.Instance.Weight
		}
	}
	return -1
}

func TestInstancerReportsOutageAndRecovers(t *testing.T) {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("needs an embedded etcd to stop")
	}
	raw := srv.Client(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	register(t, cat, catalog.Instance{Name: "outage", ID: "a", Address: "10.0.0.1:80"})
	in := newInstancer(t, cat, "outage")
	waitState(t, in, 2*time.Second, "10.0.0.1:80")

	srv.Stop()
	itest.Eventually(t, 10*time.Second, "an error with the last instances kept", func() bool {
		ev := in.State()
		return ev.Err != nil && len(ev.Instances) == 1
	})
	srv.Start()
	if err := cat.SetProperty(context.Background(), "outage", "a", catalog.PropDisabled, "true"); err != nil {
		t.Fatal(err)
	}
	put(t, raw, cat.InstanceKey("outage", "b"), "10.0.0.2:80")
	waitState(t, in, 10*time.Second, "10.0.0.2:80")
}

func TestInstancerForPrefixServesGRPCResolvers(t *testing.T) {
	srv := etcdtest.NewServer(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	register(t, cat, catalog.Instance{Name: "grpc", ID: "a", Address: "10.0.0.1:80"})
	register(t, cat, catalog.Instance{Name: "grpc", ID: "b", Address: "10.0.0.2:80"})
	if err := cat.SetProperty(context.Background(), "grpc", "a", catalog.PropDisabled, "true"); err != nil {
		t.Fatal(err)
	}
	var factory grpcsd.InstancerFactory = cat.InstancerForPrefix
	for _, prefix := range []string{"/services/grpc/", "/services/grpc"} {
		in, err := factory(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		if got := addresses(t, in.(*catalog.Instancer).State()); !slices.Equal(got, []string{"10.0.0.2:80"}) {
			t.Errorf("%s: instances %v, want the drained one left out", prefix, got)
		}
		in.(*catalog.Instancer).Stop()
	}
	for _, prefix := range []string{"/other/grpc/", "/services/", "/services/a/b/"} {
		if _, err := factory(context.Background(), prefix); err == nil || !strings.Contains(err.Error(), prefix) {
			t.Errorf("prefix %q: err = %v, want one naming it", prefix, err)
		}
	}
}

// A program configures the properties root once, on its client: the
// catalog writes properties where that client's etcdv3 Instancers read
// them, unless WithPropertiesRoot says otherwise.
func TestCatalogTakesItsPropertiesRootFromTheClient(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints(), func(o *etcdv3.ClientOptions) { o.PropertiesRoot = "/ops/" })
	cat := newCatalog(t, c)
	if got := cat.PropertiesRoot(); got != "/ops/" {
		t.Fatalf("catalog properties root %q, want the client's /ops/", got)
	}
	register(t, cat, catalog.Instance{Name: "rooted", ID: "a", Address: "10.0.0.1:80"})
	register(t, cat, catalog.Instance{Name: "rooted", ID: "b", Address: "10.0.0.2:80"})
	in, err := etcdv3.NewInstancer(c, cat.Root()+"rooted/", itest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	if err := cat.SetProperty(context.Background(), "rooted", "a", catalog.PropDisabled, "true"); err != nil {
		t.Fatal(err)
	}
	if !itest.KeyExists(t, srv.Client(t), "/ops/services/rooted/a/disabled") {
		t.Fatal("the drain is not under the client's root")
	}
	itest.Eventually(t, time.Second, "the etcdv3 Instancer drops a", func() bool { return len(in.State().Instances) == 1 })

	if got := newCatalog(t, c, catalog.WithPropertiesRoot("/other/")).PropertiesRoot(); got != "/other/" {
		t.Fatalf("WithPropertiesRoot: %q", got)
	}
	off := itestclient.New(t, srv.Endpoints(), func(o *etcdv3.ClientOptions) { o.PropertiesRoot = "-" })
	if got := newCatalog(t, off).PropertiesRoot(); got != catalog.DefaultPropertiesRoot {
		t.Fatalf("on a client with properties off: %q, want the default", got)
	}
}
