package endpointer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/endpointer"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/instance"
)

// A client that finds its servers under an etcd prefix, balances over them,
// sends v2 requests only to v2 servers, and retries failures elsewhere.
func Example_etcd() {
	ctx := context.Background()
	client, err := etcdv3.NewClient(ctx, []string{"127.0.0.1:2379"}, etcdv3.ClientOptions{})
	if err != nil {
		panic(err)
	}
	instancer, err := etcdv3.NewInstancer(client, "/services/users/", log.NewNopLogger())
	if err != nil {
		panic(err)
	}
	defer instancer.Stop()

	// The factory receives each instance's address; here it would build a
	// go-kit transport/http client for it.
	factory := func(address string) (endpoint.Endpoint, io.Closer, error) {
		return func(ctx context.Context, req any) (any, error) { return "answer from " + address, nil }, nil, nil
	}
	users, err := endpointer.New(instancer, factory, log.NewNopLogger(),
		endpointer.WithStrategy(endpointer.LeastLoaded),
		endpointer.WithRetry(3, 2*time.Second),
	)
	if err != nil {
		panic(err)
	}
	defer users.Close()

	resp, err := users.Endpoint()(endpointer.WithVersion(ctx, "v2"), "get user 42")
	fmt.Println(resp, err)
}

// fakeFactory makes endpoints that answer with their address.
func fakeFactory(address string) (endpoint.Endpoint, io.Closer, error) {
	return func(context.Context, any) (any, error) { return address, nil }, nil, nil
}

// values encodes instances as the JSON values a Registrar would publish.
// values encodes instances as etcd values.
func values(ins ...instance.Instance) sd.FixedInstancer {
	var out sd.FixedInstancer
	for _, in := range ins {
		v, err := in.Encode()
		if err != nil {
			panic(err)
		}
		out = append(out, v)
	}
	return out
}

// Any sd.Instancer feeds an Endpointer; go-kit's sd.FixedInstancer stands
// in for etcd here.
func ExampleNew() {
	src := values(
		instance.Instance{ID: "a", Address: "10.0.0.1:80", Version: "v1"},
		instance.Instance{ID: "b", Address: "10.0.0.2:80", Version: "v2", Metadata: map[string]string{"zone": "east"}},
		instance.Instance{ID: "c", Address: "10.0.0.3:80", Version: "v2", Metadata: map[string]string{"zone": "west"}},
	)
	users, err := endpointer.New(src, fakeFactory, nil)
	if err != nil {
		panic(err)
	}
	defer users.Close()

	ctx := context.Background()
	call := users.Endpoint()
	for _, ctx := range []context.Context{
		endpointer.WithVersion(ctx, "v1"),
		endpointer.WithMetadata(endpointer.WithVersion(ctx, "v2"), "zone", "west"),
	} {
		resp, err := call(ctx, nil)
		fmt.Println(resp, err)
	}
	// Output:
	// 10.0.0.1:80 <nil>
	// 10.0.0.3:80 <nil>
}

// A request for a version that no instance has fails at once with an error
// that says what is there.
func ExampleWithVersion() {
	src := values(
		instance.Instance{ID: "a", Address: "10.0.0.1:80", Version: "v1"},
		instance.Instance{ID: "b", Address: "10.0.0.2:80", Version: "v2"},
	)
	users, err := endpointer.New(src, fakeFactory, nil)
	if err != nil {
		panic(err)
	}
	defer users.Close()

	_, err = users.Endpoint()(endpointer.WithVersion(context.Background(), "v3"), nil)
	fmt.Println(errors.Is(err, endpointer.ErrNoMatch))
	fmt.Println(err)
	// Output:
	// true
	// endpointer: no instance matches version "v3" (versions available: "v1", "v2")
}

// Each client talks to two of the ten servers, and keeps them while they
// exist.
func ExampleWithSubset() {
	var src sd.FixedInstancer
	for i := range 10 {
		src = append(src, fmt.Sprintf("10.0.0.%d:80", i))
	}
	users, err := endpointer.New(src, fakeFactory, nil, endpointer.WithSubset(2, "client-7"))
	if err != nil {
		panic(err)
	}
	defer users.Close()
	fmt.Println(len(users.Instances()))
	// Output:
	// 2
}

func ExampleWithSubset_badInput() {
	_, err := endpointer.New(sd.FixedInstancer{"10.0.0.1:80"}, fakeFactory, nil, endpointer.WithSubset(0, "client-7"))
	fmt.Println(err)
	// Output:
	// endpointer: new: invalid argument: subset size 0: must be > 0
}

// Each instance gets its own middleware, made once with its endpoint. Here
// it counts the calls per address; go-kit's
// circuitbreaker.Gobreaker(gobreaker.NewCircuitBreaker(...)) plugs in the
// same way and gives each instance its own breaker: an open breaker fails
// the attempt at once, the call is retried on another instance, and its
// errors count towards ejecting the instance.
func ExampleWithInstanceMiddleware() {
	var src sd.FixedInstancer = []string{"10.0.0.1:80", "10.0.0.2:80"}
	calls := map[string]int{}
	perInstance := func(next endpoint.Endpoint) endpoint.Endpoint {
		n := 0 // this instance's own state
		return func(ctx context.Context, req any) (any, error) {
			n++
			resp, err := next(ctx, req)
			calls[resp.(string)] = n
			return resp, err
		}
	}
	users, err := endpointer.New(src, fakeFactory, nil, endpointer.WithInstanceMiddleware(perInstance))
	if err != nil {
		panic(err)
	}
	defer users.Close()
	for range 10 {
		if _, err := users.Endpoint()(context.Background(), nil); err != nil {
			panic(err)
		}
	}
	fmt.Println(calls)
	// Output:
	// map[10.0.0.1:80:5 10.0.0.2:80:5]
}
