package faults

import (
	"io"
	"net"
	"sync"
	"testing"
)

// probeSwitch is a loopback TCP forwarder whose target can be turned off
// (every connection closed, new ones refused at once) and pointed at
// another etcd: the same endpoint served by a restored or wiped etcd.
type probeSwitch struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	target string // "" while off
	conns  map[net.Conn]struct{}
}

func newProbeSwitch(t testing.TB, target string) *probeSwitch {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &probeSwitch{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		ln.Close()
		s.set("")
		s.wg.Wait()
	})
	return s
}

func (s *probeSwitch) addr() string { return s.ln.Addr().String() }

// set closes every connection and forwards new ones to target ("" refuses
// them).
func (s *probeSwitch) set(target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.target = target
	for c := range s.conns {
		c.Close()
	}
}

func (s *probeSwitch) accept() {
	defer s.wg.Done()
	for {
		in, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		target := s.target
		s.mu.Unlock()
		if target == "" {
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", target)
		if err != nil {
			in.Close()
			continue
		}
		s.mu.Lock()
		if s.target != target {
			s.mu.Unlock()
			in.Close()
			out.Close()
			continue
		}
		s.conns[in], s.conns[out] = struct{}{}, struct{}{}
		s.mu.Unlock()
		s.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer s.wg.Done()
			io.Copy(dst, src)
			dst.Close()
			src.Close()
			s.mu.Lock()
			delete(s.conns, dst)
			delete(s.conns, src)
			s.mu.Unlock()
		}
		go pipe(in, out)
		go pipe(out, in)
	}
}
