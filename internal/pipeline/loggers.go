package pipeline

import (
	"reflect"
	"sync"

	"github.com/go-kit/log"
)

// Loggers is a log.Logger that hands each record to every logger added and
// not removed yet, once per distinct logger (loggers compare by ==, where
// their type allows it). What several consumers share — a shared Mirror, a
// shared Feed — logs through one, so that each consumer's logger gets the
// records of what it uses, as it would if it had its own, and a logger
// that several consumers were given gets each record once. The zero value
// logs nowhere.
type Loggers struct {
	mu sync.Mutex
	ls []*loggerRef
}

type loggerRef struct {
	l log.Logger
	n int // adds not removed yet
}

// Add has l receive the records until remove is called. remove is
// idempotent.
func (ls *Loggers) Add(l log.Logger) (remove func()) {
	if l == nil {
		return func() {}
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var ref *loggerRef
	for _, r := range ls.ls {
		if sameLogger(r.l, l) {
			ref = r
			break
		}
	}
	if ref == nil {
		ref = &loggerRef{l: l}
		ls.ls = append(ls.ls, ref)
	}
	ref.n++
	var once sync.Once
	return func() { once.Do(func() { ls.remove(ref) }) }
}

func (ls *Loggers) remove(ref *loggerRef) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ref.n--; ref.n > 0 {
		return
	}
	for i, r := range ls.ls {
		if r == ref {
			ls.ls = append(ls.ls[:i:i], ls.ls[i+1:]...)
			return
		}
	}
}

// Log implements log.Logger. It returns the first error of a logger.
func (ls *Loggers) Log(keyvals ...any) error {
	ls.mu.Lock()
	targets := make([]log.Logger, len(ls.ls))
	for i, r := range ls.ls {
		targets[i] = r.l
	}
	ls.mu.Unlock()
	var first error
	for _, l := range targets {
		if err := l.Log(keyvals...); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// sameLogger reports whether a and b are one logger; loggers whose type
// cannot be compared (a log.LoggerFunc) are never the same.
func sameLogger(a, b log.Logger) bool {
	return reflect.ValueOf(a).Comparable() && reflect.ValueOf(b).Comparable() && a == b
}
