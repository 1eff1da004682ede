package etcdv3_test

import (
	"context"
	"fmt"
	"time"

	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
)

// Example is the whole job: a service registers itself, a client discovers
// it, and sees it leave.
func Example() {
	t := etcdtest.NewExampleTB() // a real etcd for the example; yours is already running
	defer t.Finish()
	endpoints := etcdtest.NewServer(t).Endpoints()

	ctx := context.Background()
	client, err := etcdv3.NewClient(ctx, endpoints, etcdv3.ClientOptions{DialTimeout: 3 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.(*etcdv3.EtcdClient).Close()

	// The service side: register, kept alive with a 3 s heartbeat and 9 s TTL.
	registrar := etcdv3.NewRegistrar(client, etcdv3.Service{
		Key:   "/services/greeter/10.0.0.1:8080",
		Value: "http://10.0.0.1:8080",
		TTL:   etcdv3.NewTTLOption(3*time.Second, 9*time.Second),
	}, log.NewNopLogger())
	registrar.Register()

	// The client side: watch the prefix; a new subscriber gets the current state at once.
	instancer, err := etcdv3.NewInstancer(client, "/services/greeter/", log.NewNopLogger())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer instancer.Stop()
	events := make(chan sd.Event, 1)
	instancer.Register(events)
	fmt.Println((<-events).Instances)

	registrar.Deregister()
	fmt.Println((<-events).Instances)
	// Output:
	// [http://10.0.0.1:8080]
	// []
}

// ExampleRegistrar_Status shows how a service learns whether it is registered.
func ExampleRegistrar_Status() {
	t := etcdtest.NewExampleTB()
	defer t.Finish()
	endpoints := etcdtest.NewServer(t).Endpoints()
	client, err := etcdv3.NewEtcdClient(context.Background(), endpoints, etcdv3.ClientOptions{})
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
	fmt.Println(r.Status().State, r.Status().Err)
	r.Deregister()
	fmt.Println(r.Status().State)

	// As in go-kit, an empty key or value gives the bare sentinel.
	bad := etcdv3.NewRegistrar(client, etcdv3.Service{Key: "/services/app/2"}, log.NewNopLogger())
	err = bad.RegisterContext(context.Background())
	fmt.Println(err, err == etcdv3.ErrNoValue)
	// Output:
	// registered <nil>
	// deregistered
	// no value provided true
}
