package promsd_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/promsd"
)

// ExampleClientMetrics serves a client's metrics at /metrics, in
// Prometheus' text format.
func ExampleClientMetrics() {
	t := etcdtest.NewExampleTB()
	defer t.Finish()
	endpoints := etcdtest.NewServer(t).Endpoints()

	reg := prometheus.NewRegistry()
	client, err := etcdv3.NewEtcdClient(context.Background(), endpoints, etcdv3.ClientOptions{Metrics: promsd.ClientMetrics(reg, "etcdsd")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	r := etcdv3.NewRegistrar(client, etcdv3.Service{Key: "/services/app/1", Value: "10.0.0.1:9000"}, log.NewNopLogger())
	if err := r.RegisterContext(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	defer r.Deregister()
	in, err := etcdv3.NewInstancer(client, "/services/app/", log.NewNopLogger())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer in.Stop()

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, "etcdsd_instances{") || strings.HasPrefix(line, "etcdsd_registrations{") {
			fmt.Println(line)
		}
	}
	// Output:
	// etcdsd_instances{prefix="/services/app/"} 1
	// etcdsd_registrations{state="idle"} 0
	// etcdsd_registrations{state="registered"} 1
	// etcdsd_registrations{state="registering"} 0
}
