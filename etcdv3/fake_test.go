package etcdv3

import (
	"errors"
	"slices"
	"sync"
)

// goKitFake implements only the five go-kit Client methods, like the fakes
// users write for go-kit's sd/etcdv3.
type goKitFake struct {
	mu       sync.Mutex
	kv       map[string]string
	watchers []chan struct{}
	failGets int             // GetEntries calls left to fail
	regErr   error           // returned by Register while set
	regs     int             // Register calls started
	deregs   int             // Deregister calls that have deleted
	read     map[string]bool // prefixes GetEntries was asked for
	quit     chan struct{}
	// onRegister and onDeregister, when set, run once at the start of the
	// next Register (once it is counted) or Deregister, before its put or
	// delete.
	onRegister   func()
	onDeregister func()
}

func newGoKitFake() *goKitFake {
	return &goKitFake{kv: map[string]string{}, read: map[string]bool{}, quit: make(chan struct{})}
}

func (f *goKitFake) GetEntries(prefix string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.read[prefix] = true
	if f.failGets > 0 {
		f.failGets--
		return nil, errors.New("fake: etcd down")
	}
	var out []string
	for k, v := range f.kv {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out, nil
}

// WatchPrefix signals on every change until the fake is closed, as go-kit's
// client does until its context ends.
func (f *goKitFake) WatchPrefix(prefix string, ch chan struct{}) {
	sig := make(chan struct{}, 1)
	f.mu.Lock()
	f.watchers = append(f.watchers, sig)
	f.mu.Unlock()
	select {
	case ch <- struct{}{}:
	case <-f.quit:
		return
	}
	for {
		select {
		case <-sig:
		case <-f.quit:
			return
		}
		select {
		case ch <- struct{}{}:
		case <-f.quit:
			return
		}
	}
}

func (f *goKitFake) put(k, v string) {
	f.mu.Lock()
	f.kv[k] = v
	f.mu.Unlock()
	f.notify()
}

func (f *goKitFake) del(k string) {
	f.mu.Lock()
	delete(f.kv, k)
	f.mu.Unlock()
	f.notify()
}

func (f *goKitFake) notify() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range f.watchers {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

func (f *goKitFake) Register(s Service) error {
	f.mu.Lock()
	f.regs++
	hook := f.onRegister
	f.onRegister = nil
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	f.mu.Lock()
	err := f.regErr
	f.mu.Unlock()
	if err != nil {
		return err
	}
	f.put(s.Key, s.Value)
	return nil
}

func (f *goKitFake) Deregister(s Service) error {
	f.mu.Lock()
	hook := f.onDeregister
	f.onDeregister = nil
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	f.del(s.Key)
	f.mu.Lock()
	f.deregs++
	f.mu.Unlock()
	return nil
}

func (f *goKitFake) LeaseID() int64 { return 42 }

func (f *goKitFake) close() { close(f.quit) }
