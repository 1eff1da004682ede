package bench

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	kitsd "github.com/go-kit/kit/sd"
	kitetcd "github.com/go-kit/kit/sd/etcdv3"
	"github.com/go-kit/log"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
)

const prefix = "/bench/svc/"

// preload puts n instances under prefix, 128 per transaction.
func preload(tb testing.TB, cli *clientv3.Client, n int) {
	tb.Helper()
	ctx := context.Background()
	var ops []clientv3.Op
	for i := range n {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("%s%05d", prefix, i), fmt.Sprintf("10.%d.%d.%d:8080", i/65536, i/256%256, i%256)))
		if len(ops) == 128 || i == n-1 {
			if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
				tb.Fatal(err)
			}
			ops = ops[:0]
		}
	}
}

// propagation measures, per iteration, a put of one instance until a
// subscriber has seen it; wait blocks until the change with value v is seen.
func propagation(b *testing.B, cli *clientv3.Client, wait func(v string)) {
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v := fmt.Sprintf("10.255.255.255:%d", i%2+1)
		start := time.Now()
		if _, err := cli.Put(ctx, prefix+"changing", v); err != nil {
			b.Fatal(err)
		}
		wait(v)
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// subscribe registers with in until the benchmark ends, and returns a wait
// function reading sd.Events until one holds v.
func subscribe(b *testing.B, in kitsd.Instancer) func(string) {
	ch := make(chan kitsd.Event, 1)
	in.Register(ch)
	b.Cleanup(func() { in.Deregister(ch) })
	return func(v string) {
		timeout := time.After(30 * time.Second)
		for {
			select {
			case ev := <-ch:
				if _, found := slices.BinarySearch(ev.Instances, v); found && ev.Err == nil {
					return
				}
			case <-timeout:
				b.Fatalf("value %q not seen within 30s", v)
			}
		}
	}
}

func BenchmarkPropagation(b *testing.B) {
	for _, n := range []int{100, 10000} {
		srv := etcdtest.NewServer(b)
		admin := srv.Client(b)
		preload(b, admin, n)

		b.Run(fmt.Sprintf("instances=%d/impl=rawwatch", n), func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			wch := admin.Watch(ctx, prefix, clientv3.WithPrefix())
			propagation(b, admin, func(v string) {
				for wr := range wch {
					for _, ev := range wr.Events {
						if string(ev.Kv.Value) == v {
							return
						}
					}
				}
			})
		})

		b.Run(fmt.Sprintf("instances=%d/impl=etcdsd", n), func(b *testing.B) {
			c := etcdv3.FromClient(admin, etcdv3.ClientOptions{})
			defer c.Close()
			in, err := etcdv3.NewInstancer(c, prefix, log.NewNopLogger())
			if err != nil {
				b.Fatal(err)
			}
			defer in.Stop()
			propagation(b, admin, subscribe(b, in))
		})

		b.Run(fmt.Sprintf("instances=%d/impl=gokit", n), func(b *testing.B) {
			goKitRan = true
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			c, err := kitetcd.NewClient(ctx, srv.Endpoints(), kitetcd.ClientOptions{DialTimeout: 5 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			in, err := kitetcd.NewInstancer(c, prefix, log.NewNopLogger())
			if err != nil {
				b.Fatal(err)
			}
			defer in.Stop()
			propagation(b, admin, subscribe(b, in))
		})
	}
}
