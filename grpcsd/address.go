package grpcsd

import (
	"fmt"
	"net/url"
	"strings"
)

// dialAddress turns an instance address into the host:port gRPC dials. A
// URL such as "http://10.0.0.1:8080" (go-kit's usual value) gives its host
// and port; a plain "10.0.0.1:9000" or "name:9000" is kept as it is.
func dialAddress(addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		return addr, nil
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", addr, err)
	}
	if u.Host == "" {
		return "", fmt.Errorf("address %q has no host", addr)
	}
	return u.Host, nil
}
