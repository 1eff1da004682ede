package etcdv3_test

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/go-kit/kit/sd/lb"
	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/instance"
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
		Value: "10.0.0.1:8080",
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
	// [10.0.0.1:8080]
	// []
}

// Example_goKitEndpointer is the README's Usage: a service registers its
// address, and a client balances over go-kit endpoints whose factory
// makes an HTTP URL of each instance's host:port.
func Example_goKitEndpointer() {
	t := etcdtest.NewExampleTB()
	defer t.Finish()
	endpoints := etcdtest.NewServer(t).Endpoints()
	logger := log.NewNopLogger()

	client, err := etcdv3.NewEtcdClient(context.Background(), endpoints, etcdv3.ClientOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.Close()

	registrar := etcdv3.NewRegistrar(client, etcdv3.Service{
		Key:   "/services/greeter/10.0.0.1:8080",
		Value: "10.0.0.1:8080",
		TTL:   etcdv3.NewTTLOption(3*time.Second, 9*time.Second),
	}, logger)
	registrar.Register()
	defer registrar.Deregister()

	instancer, err := etcdv3.NewInstancer(client, "/services/greeter/", logger)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer instancer.Stop()
	// The factory of the README: an endpoint that says which URL it would call.
	factory := func(addr string) (endpoint.Endpoint, io.Closer, error) {
		u, err := url.Parse("http://" + addr)
		if err != nil {
			return nil, nil, err
		}
		return func(context.Context, any) (any, error) { return u.String(), nil }, nil, nil
	}
	endpointer := sd.NewEndpointer(instancer, instance.AddressFactory(factory), logger)
	defer endpointer.Close()
	// go-kit's endpointer takes the Instancer's events in a goroutine of its own.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if eps, _ := endpointer.Endpoints(); len(eps) > 0 {
			break
		}
	}
	call := lb.Retry(3, time.Second, lb.NewRoundRobin(endpointer))
	fmt.Println(call(context.Background(), nil))
	// Output:
	// http://10.0.0.1:8080 <nil>
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
