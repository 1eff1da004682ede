package catalog_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/go-kit/kit/endpoint"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/endpointer"
	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
)

// A service registers typed instances; a client balances over them through
// the catalog's Instancer; an operator drains one from outside its process
// (as `etcdsd drain app app-1` does) and the client's traffic leaves it.
func Example() {
	t := etcdtest.NewExampleTB() // a real etcd for the example; yours is already running
	defer t.Finish()
	srv := etcdtest.NewServer(t)

	ctx := context.Background()
	client, err := etcdv3.NewEtcdClient(ctx, srv.Endpoints(), etcdv3.ClientOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	cat, _ := catalog.New(client)

	// In the services: keys kept alive until Drain or Deregister.
	for _, inst := range []catalog.Instance{
		{Name: "app", ID: "app-1", Version: "v2", Address: "10.0.0.1:9000"},
		{Name: "app", ID: "app-2", Version: "v2", Address: "10.0.0.2:9000"},
	} {
		reg, err := cat.Register(ctx, inst)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer reg.Drain(ctx, 0) // leave discovery, let requests finish, deregister
	}
	services, _ := cat.ListServices(ctx)
	fmt.Println(services)

	// In a client: an endpointer on an Instancer that honours properties.
	instancer, _ := cat.NewInstancer(ctx, "app")
	defer instancer.Stop()
	factory := func(address string) (endpoint.Endpoint, io.Closer, error) {
		return func(context.Context, any) (any, error) { return address, nil }, nil, nil
	}
	balancer, _ := endpointer.New(instancer, factory, nil)
	defer balancer.Close()
	call := balancer.Endpoint()
	served := func() []string { // the addresses two calls went to
		a, _ := call(ctx, nil)
		b, _ := call(ctx, nil)
		return slices.Sorted(slices.Values([]string{a.(string), b.(string)}))
	}
	fmt.Println("before drain:", served())

	// From anywhere: out of rotation within one watch event.
	if err := cat.SetProperty(ctx, "app", "app-1", catalog.PropDisabled, "true"); err != nil {
		fmt.Println(err)
		return
	}
	onlyApp2 := []string{"10.0.0.2:9000", "10.0.0.2:9000"}
	after := served()
	for deadline := time.Now().Add(time.Second); !slices.Equal(after, onlyApp2) && time.Now().Before(deadline); after = served() {
		time.Sleep(time.Millisecond)
	}
	fmt.Println("after drain:", after)
	// Output:
	// [{app 2}]
	// before drain: [10.0.0.1:9000 10.0.0.2:9000]
	// after drain: [10.0.0.2:9000 10.0.0.2:9000]
}

func ExampleCatalog_Watch() {
	t := etcdtest.NewExampleTB()
	defer t.Finish()
	srv := etcdtest.NewServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client, err := etcdv3.NewEtcdClient(ctx, srv.Endpoints(), etcdv3.ClientOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	cat, _ := catalog.New(client)

	events, err := cat.Watch(ctx, catalog.WatchService("app"))
	if err != nil {
		fmt.Println(err)
		return
	}
	reg, _ := cat.Register(ctx, catalog.Instance{Name: "app", ID: "app-1", Address: "10.0.0.1:9000"})
	cat.SetProperty(ctx, "app", "app-1", catalog.PropWeight, "5")
	reg.Deregister(ctx)

	for range 3 {
		ev := <-events // closed after ctx ends
		switch {
		case ev.Err != nil:
			fmt.Println("etcd unavailable, retrying:", ev.Err)
		case ev.Kind == catalog.KindInstance:
			fmt.Println(ev.Type, ev.Kind, ev.Service, ev.ID, ev.Instance.Address)
		case ev.Kind == catalog.KindProperty:
			fmt.Println(ev.Type, ev.Kind, ev.Service, ev.ID, ev.Property.Name, ev.Property.Value)
		}
	}
	// Unordered output:
	// put instance app app-1 10.0.0.1:9000
	// put property app app-1 weight 5
	// delete instance app app-1 10.0.0.1:9000
}
