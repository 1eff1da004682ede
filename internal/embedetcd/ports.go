package embedetcd

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
)

// FreePorts finds n distinct free loopback ports. It holds all listeners
// open together so that no port is handed out twice; another process may
// still take one before etcd binds it, which the callers retry.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// LoopbackURL is http://127.0.0.1:port.
func LoopbackURL(port int) url.URL {
	return url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
}

// EndpointOf returns u as clientv3 takes it: host:port for plain text, and
// the full URL for TLS so the scheme tells the reader to configure TLS.
func EndpointOf(u url.URL) string {
	if u.Scheme == "https" {
		return "https://" + u.Host
	}
	return u.Host
}
