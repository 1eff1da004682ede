package itest

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"
)

// EtcdMetric reads one series of etcd's own metrics from the member at
// endpoint: the sum of the samples of name whose labels include every
// label given (`grpc_method="Range"`). Embedded members share the test
// process's registry, so compare readings, never absolute values.
func EtcdMetric(t *testing.T, endpoint, name string, labels ...string) float64 {
	t.Helper()
	// One plain HTTP/1.1 exchange on a connection closed after it: an
	// http.Client would keep goroutines around that goleak finds.
	conn, err := net.DialTimeout("tcp", endpoint, 5*time.Second)
	if err != nil {
		t.Fatalf("read etcd's metrics at %s: %v", endpoint, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", endpoint); err != nil {
		t.Fatalf("read etcd's metrics at %s: %v", endpoint, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read etcd's metrics at %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read etcd's metrics at %s: %v", endpoint, err)
	}
	return sum
}

// ErrorEvents counts the events with an error among evs.
func ErrorEvents(evs []sd.Event) int {
	n := 0
	for _, ev := range evs {
		if ev.Err != nil {
			n++
		}
	}
	return n
}
