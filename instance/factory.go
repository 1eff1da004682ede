package instance

import (
	"io"

	"github.com/go-kit/kit/endpoint"
	"github.com/go-kit/kit/sd"
)

// AddressFactory returns a go-kit sd.Factory that hands f the address of
// each instance value instead of the value: a plain value
// ("10.0.0.1:8080") passes through unchanged, and a JSON value gives its
// "address". Wrap a factory with it when services register JSON values,
// whose raw text a factory doing url.Parse("http://" + instance) cannot
// use:
//
//	sd.NewEndpointer(instancer, instance.AddressFactory(factory), logger)
//
// Each value is parsed once, when go-kit's endpointer first sees it. A
// value that does not parse gives the error of Parse, which names it
// (go-kit's endpointer logs it and leaves the instance out).
func AddressFactory(f sd.Factory) sd.Factory {
	return func(value string) (endpoint.Endpoint, io.Closer, error) {
		inst, err := Parse(value)
		if err != nil {
			return nil, nil, err
		}
		return f(inst.Address)
	}
}
