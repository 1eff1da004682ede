package instance_test

import (
	"context"
	"fmt"
	"io"
	"net/url"

	"github.com/go-kit/kit/endpoint"

	"github.com/etcdsd/etcdsd/instance"
)

func ExampleParse() {
	inst, err := instance.Parse(`{"id":"app-1","version":"v2","address":"10.0.0.1:9000","metadata":{"zone":"a"}}`)
	fmt.Println(inst.ID, inst.Version, inst.Address, inst.Metadata["zone"], inst.EffectiveWeight(), err)

	_, err = instance.Parse(`{"address":`)
	fmt.Println(err != nil)
	// Output:
	// app-1 v2 10.0.0.1:9000 a 1 <nil>
	// true
}

// A go-kit factory that makes HTTP endpoints from "host:port" works for
// plain and JSON instance values alike when wrapped with AddressFactory.
func ExampleAddressFactory() {
	factory := func(hostport string) (endpoint.Endpoint, io.Closer, error) {
		u, err := url.Parse("http://" + hostport)
		if err != nil {
			return nil, nil, err
		}
		fmt.Println("endpoint for", u.Host)
		return func(context.Context, any) (any, error) { return u.String(), nil }, nil, nil
	}
	f := instance.AddressFactory(factory)
	f("10.0.0.1:8080")
	f(`{"id":"app-1","version":"v2","address":"10.0.0.2:8080"}`)
	_, _, err := f(`{"address":`)
	fmt.Println(err)
	// Output:
	// endpoint for 10.0.0.1:8080
	// endpoint for 10.0.0.2:8080
	// instance: malformed instance value "{\"address\":": invalid JSON: unexpected EOF
}
