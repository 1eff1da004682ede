package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/go-kit/kit/endpoint"
)

// echo is a factory whose endpoint answers with the string it was made
// for.
func echo(got *[]string) func(string) (endpoint.Endpoint, io.Closer, error) {
	return func(s string) (endpoint.Endpoint, io.Closer, error) {
		*got = append(*got, s)
		return func(context.Context, any) (any, error) { return s, nil }, nil, nil
	}
}

func TestAddressFactoryHandsTheAddress(t *testing.T) {
	for _, tc := range []struct{ value, want string }{
		{"127.0.0.1:8080", "127.0.0.1:8080"},
		{"http://10.0.0.1:8080", "http://10.0.0.1:8080"},
		{`{"id":"a","version":"v2","address":"10.0.0.1:9000","weight":5}`, "10.0.0.1:9000"},
		{` {"address":"10.0.0.2:9000"}`, "10.0.0.2:9000"},
	} {
		var got []string
		ep, _, err := AddressFactory(echo(&got))(tc.value)
		if err != nil {
			t.Fatalf("%q: %v", tc.value, err)
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Fatalf("%q: factory got %q, want [%q]", tc.value, got, tc.want)
		}
		if resp, _ := ep(context.Background(), nil); resp != tc.want {
			t.Fatalf("%q: endpoint of %v", tc.value, resp)
		}
	}
}

func TestAddressFactoryRefusesMalformedValuesNamingThem(t *testing.T) {
	for _, v := range []string{"", `{"address":`, `{"weight":1}`, "10.0.0.1 :80", `{"address":"a:1"} x`} {
		var got []string
		ep, closer, err := AddressFactory(echo(&got))(v)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), fmt.Sprintf("%q", shorten(v))) {
			t.Errorf("%q: err = %v, want ErrMalformed naming the value", v, err)
		}
		if ep != nil || closer != nil || len(got) != 0 {
			t.Errorf("%q: endpoint %v, closer %v, factory called with %q; want nothing", v, ep != nil, closer, got)
		}
	}
}

func TestAddressFactoryPassesTheFactorysError(t *testing.T) {
	boom := errors.New("dial refused")
	_, _, err := AddressFactory(func(string) (endpoint.Endpoint, io.Closer, error) { return nil, nil, boom })("a:1")
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
}
