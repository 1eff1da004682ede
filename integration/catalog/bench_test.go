package catalog_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/go-kit/kit/sd"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
)

// BenchmarkListServices lists 1,000 services (about 6,000 instances):
// the catalog's keys-only paged read against the way go-kit's GetEntries
// and go-zero's discov read a prefix, values included, grouped by service.
func BenchmarkListServices(b *testing.B) {
	srv := etcdtest.NewServer(b)
	raw := srv.Client(b)
	c := itestclient.New(b, srv.Endpoints())
	cat := newCatalog(b, c, catalog.WithRoot("/bench-list/"))
	total := putServices(b, raw, "/bench-list/", 1000)
	ctx := context.Background()

	b.Run("catalog-keys-only", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			services, err := cat.ListServices(ctx)
			if err != nil || len(services) != 1000 {
				b.Fatalf("%d services, %v", len(services), err)
			}
		}
	})
	b.Run("full-read-values", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			resp, err := raw.Get(ctx, "/bench-list/", clientv3.WithPrefix())
			if err != nil || len(resp.Kvs) != total {
				b.Fatalf("%d keys, %v", len(resp.Kvs), err)
			}
			counts := map[string]int{}
			for _, kv := range resp.Kvs {
				name, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), "/bench-list/"), "/")
				counts[name]++
			}
			if len(counts) != 1000 {
				b.Fatalf("%d services", len(counts))
			}
		}
	})
}

// BenchmarkPropagation measures one change from etcd to a subscriber:
// the catalog's Instancer against etcdv3's, on 100 instances. Both run the
// overlay of internal/property (two mirrors, properties applied).
func BenchmarkPropagation(b *testing.B) {
	srv := etcdtest.NewServer(b)
	raw := srv.Client(b)
	c := itestclient.New(b, srv.Endpoints())
	cat := newCatalog(b, c)
	for _, svc := range []string{"prop-catalog", "prop-etcdv3"} {
		for i := range 100 {
			put(b, raw, cat.InstanceKey(svc, fmt.Sprint(i)), fmt.Sprintf(`{"address":"10.0.0.%d:80"}`, i))
		}
		if err := cat.SetProperty(context.Background(), svc, "0", catalog.PropWeight, "3"); err != nil {
			b.Fatal(err)
		}
	}
	run := func(b *testing.B, svc string, in sd.Instancer) {
		ch := make(chan sd.Event, 1)
		in.Register(ch)
		defer in.Deregister(ch)
		<-ch
		key := cat.InstanceKey(svc, "changing")
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			want := fmt.Sprintf(`{"address":"10.1.%d.%d:80"}`, i/250, i%250)
			if _, err := raw.Put(context.Background(), key, want); err != nil {
				b.Fatal(err)
			}
			for ev := range ch {
				if ev.Err == nil && slices.Contains(ev.Instances, want) {
					break
				}
			}
		}
	}
	b.Run("catalog-instancer", func(b *testing.B) {
		in := newInstancer(b, cat, "prop-catalog")
		run(b, "prop-catalog", in)
	})
	b.Run("etcdv3-instancer", func(b *testing.B) {
		in, err := etcdv3.NewInstancer(c, cat.Root()+"prop-etcdv3/", itest.Logger(b))
		if err != nil {
			b.Fatal(err)
		}
		defer in.Stop()
		run(b, "prop-etcdv3", in)
	})
}
