package promsd_test

import (
	"context"
	"fmt"
	"io"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/etcdsd/etcdsd/endpointer"
	"github.com/etcdsd/etcdsd/promsd"
)

// ExampleClientMetrics, which starts a real (embedded) etcd, is in the
// integration module: integration/examples/promsd.

// ExampleEndpointerMetrics labels the metrics of each Endpointer with its
// service.
func ExampleEndpointerMetrics() {
	reg := prometheus.NewRegistry()
	m := promsd.EndpointerMetrics(reg, "etcdsd", "service")
	factory := func(string) (endpoint.Endpoint, io.Closer, error) { return endpoint.Nop, nil, nil }
	users, err := endpointer.New(sd.FixedInstancer{"10.0.0.1:80", "10.0.0.2:80"}, factory, log.NewNopLogger(),
		endpointer.WithMetrics(m.With("service", "users")))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer users.Close()
	for range 3 {
		users.Endpoint()(context.Background(), nil)
	}
	users.Endpoint()(endpointer.WithVersion(context.Background(), "v2"), nil)

	families, _ := reg.Gather()
	for _, f := range families {
		for _, metric := range f.GetMetric() {
			if c := metric.GetCounter(); c != nil {
				fmt.Printf("%s{service=%q} %v\n", f.GetName(), metric.GetLabel()[0].GetValue(), c.GetValue())
			}
		}
	}
	// Output:
	// etcdsd_endpointer_no_match_total{service="users"} 1
	// etcdsd_endpointer_picks_total{service="users"} 3
}
