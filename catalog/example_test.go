package catalog_test

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/go-kit/kit/endpoint"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/endpointer"
	"github.com/etcdsd/etcdsd/etcdv3"
)

// A service registers a typed instance; an operator drains it from outside
// the process; every reader of the catalog's Instancer drops it.
func Example() {
	ctx := context.Background()
	client, err := etcdv3.NewEtcdClient(ctx, []string{"127.0.0.1:2379"}, etcdv3.ClientOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()
	cat, _ := catalog.New(client, catalog.WithTTL(time.Second, 3*time.Second))

	// In the service: the id is generated, the key kept alive.
	reg, err := cat.Register(ctx, catalog.Instance{Name: "app", Version: "v2", Address: "10.0.0.1:9000"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Drain(ctx, 5*time.Second) // leave discovery, let requests finish, deregister

	// In a client: an sd.Instancer that honours the operator's properties.
	instancer, _ := cat.NewInstancer(ctx, "app")
	defer instancer.Stop()
	factory := func(address string) (endpoint.Endpoint, io.Closer, error) {
		return endpoint.Nop, nil, nil // your transport to address here
	}
	balancer, _ := endpointer.New(instancer, factory, nil)
	defer balancer.Close()

	// From anywhere (or `etcdsd drain app <id>`): out of rotation at once.
	_ = cat.SetProperty(ctx, "app", reg.ID(), catalog.PropDisabled, "true")
}

func ExampleCatalog_Watch() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client, err := etcdv3.NewEtcdClient(ctx, []string{"127.0.0.1:2379"}, etcdv3.ClientOptions{})
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
	for ev := range events { // closed after ctx ends
		switch {
		case ev.Err != nil:
			fmt.Println("etcd unavailable, retrying:", ev.Err)
		case ev.Kind == catalog.KindInstance:
			fmt.Println(ev.Revision, ev.Type, ev.Service, ev.ID, ev.Instance.Address)
		case ev.Kind == catalog.KindProperty:
			fmt.Println(ev.Revision, ev.Type, ev.Service, ev.ID, ev.Property.Name, ev.Property.Value)
		}
	}
}

func ExampleEffective() {
	inst := catalog.Instance{Name: "app", ID: "a-1", Address: "10.0.0.1:9000", Weight: 1}
	props := []catalog.Property{
		{Service: "app", ID: "a-1", Name: catalog.PropWeight, Value: "5"},
		{Service: "app", ID: "a-2", Name: catalog.PropDisabled, Value: "true"},
	}
	eff, inRotation := catalog.Effective(inst, props)
	fmt.Println(eff.Weight, inRotation)

	inst.ID = "a-2"
	_, inRotation = catalog.Effective(inst, props)
	fmt.Println(inRotation)
	// Output:
	// 5 true
	// false
}
