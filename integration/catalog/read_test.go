package catalog_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// putServices writes n services, service i having i%11+1 instances (about 6,000 keys, more than one page of ListServices), in
// transactions of 120 puts, and returns the total number of instances.
func putServices(t testing.TB, raw *clientv3.Client, root string, n int) int {
	t.Helper()
	var ops []clientv3.Op
	total := 0
	flush := func() {
		if len(ops) == 0 {
			return
		}
		if _, err := raw.Txn(context.Background()).Then(ops...).Commit(); err != nil {
			t.Fatalf("txn: %v", err)
		}
		ops = ops[:0]
	}
	for i := range n {
		for j := range i%11 + 1 {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("%ssvc-%04d/i%d", root, i, j), fmt.Sprintf(`{"address":"10.%d.%d.%d:80"}`, i/256, i%256, j)))
			total++
			if len(ops) == 120 {
				flush()
			}
		}
	}
	flush()
	return total
}

func TestListServicesOnAThousandServices(t *testing.T) {
	srv := etcdtest.NewServer(t)
	raw := srv.Client(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()), catalog.WithRoot("/list-1000/"))
	const n = 1000
	total := putServices(t, raw, "/list-1000/", n)
	put(t, raw, "/list-1000/no-id", "10.0.0.1:80") // not <root><name>/<id>: not a service

	start := time.Now()
	services, err := cat.ListServices(context.Background())
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ListServices: %d services, %d instances in %v", len(services), total, took)
	if len(services) != n {
		t.Fatalf("%d services, want %d", len(services), n)
	}
	sum := 0
	for i, s := range services {
		if want := fmt.Sprintf("svc-%04d", i); s.Name != want || s.Instances != i%11+1 {
			t.Fatalf("service %d = %+v, want %s with %d instances", i, s, want, i%11+1)
		}
		sum += s.Instances
	}
	if sum != total {
		t.Fatalf("%d instances counted, want %d", sum, total)
	}
}

func TestGetServiceInstancesAndProperties(t *testing.T) {
	srv := etcdtest.NewServer(t)
	raw := srv.Client(t)
	cat := newCatalog(t, itestclient.New(t, srv.Endpoints()))
	ctx := context.Background()
	register(t, cat, catalog.Instance{Name: "get", ID: "b", Address: "10.0.0.2:80", Version: "v2", Metadata: map[string]string{"zone": "a"}, Weight: 3})
	register(t, cat, catalog.Instance{Name: "get", ID: "a", Address: "10.0.0.1:80"})
	register(t, cat, catalog.Instance{Name: "getter", ID: "c", Address: "10.0.0.3:80"})
	put(t, raw, cat.InstanceKey("get", "plain"), "http://10.0.0.4:80") // go-kit style
	put(t, raw, cat.InstanceKey("get", "bad"), `{"address":`)          // skipped

	got, err := cat.GetService(ctx, "get")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ID != "a" || got[1].ID != "b" || got[2].ID != "plain" {
		t.Fatalf("GetService = %+v, want a, b, plain", got)
	}
	if b := got[1]; b.Version != "v2" || b.Metadata["zone"] != "a" || b.Weight != 3 || b.Name != "get" {
		t.Fatalf("instance b = %+v", b)
	}
	if p := got[2]; p.Address != "http://10.0.0.4:80" {
		t.Fatalf("plain instance = %+v", p)
	}
	register(t, cat, catalog.Instance{Name: "get-1", ID: "d", Address: "10.0.0.5:80"})
	prefixed, err := cat.Instances(ctx, "get")
	if err != nil || len(prefixed) != 5 {
		t.Fatalf("Instances(get) = %+v, %v; want get's 3, get-1's 1 and getter's 1", prefixed, err)
	}
	// Sorted by service, then id: etcd's key order would put "get-1/"
	// before "get/".
	var order []string
	for _, in := range prefixed {
		order = append(order, in.Name+"/"+in.ID)
	}
	if want := []string{"get/a", "get/b", "get/plain", "get-1/d", "getter/c"}; !slices.Equal(order, want) {
		t.Fatalf("Instances(get) in order %v, want %v", order, want)
	}

	if err := cat.SetProperty(ctx, "get", "b", catalog.PropWeight, "9"); err != nil {
		t.Fatal(err)
	}
	if err := cat.SetProperty(ctx, "get", "", catalog.PropDisabled, "true"); err != nil {
		t.Fatal(err)
	}
	if err := cat.SetProperty(ctx, "get", "b", catalog.PropWeight, "0"); err == nil {
		t.Fatal("weight 0 accepted")
	}
	props, err := cat.Properties(ctx, "get")
	if err != nil {
		t.Fatal(err)
	}
	want := []catalog.Property{
		{Service: "get", ID: "", Name: catalog.PropDisabled, Value: "true"},
		{Service: "get", ID: "b", Name: catalog.PropWeight, Value: "9"},
	}
	if fmt.Sprint(props) != fmt.Sprint(want) {
		t.Fatalf("Properties = %+v, want %+v", props, want)
	}
	if !itest.KeyExists(t, raw, "/etcdsd/properties/services/get/_/disabled") {
		t.Fatal("service-wide property not at its documented key")
	}
	if err := cat.ClearProperty(ctx, "get", "", catalog.PropDisabled); err != nil {
		t.Fatal(err)
	}
	if err := cat.ClearProperty(ctx, "get", "", catalog.PropDisabled); err != nil {
		t.Fatalf("clearing again: %v", err)
	}
	if props, _ := cat.Properties(ctx, "get"); len(props) != 1 {
		t.Fatalf("after clear: %+v", props)
	}
}
