package etcdtest

import (
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// maxLog bounds the etcd log kept for a failing test; older output goes.
const maxLog = 64 << 10

// testLog keeps etcd's log output and writes it to the test log only if the
// test failed. etcd logs errors on every normal shutdown ("use of closed
// network connection"), which would bury the output of passing tests.
type testLog struct {
	mu      sync.Mutex
	buf     []byte
	dropped bool
	done    bool
}

// newTestLog returns a testLog that reports to tb once every cleanup
// registered after it has run (cleanups run last-in, first-out), so that
// it also holds what etcd logs while it stops.
func newTestLog(tb testing.TB) *testLog {
	l := &testLog{}
	tb.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		// Writes after this point come from goroutines that outlive the
		// test, and testing panics on a Log after the test ended.
		l.done = true
		if tb.Failed() && len(l.buf) > 0 {
			head := "etcd log:"
			if l.dropped {
				head = "etcd log (older lines dropped):"
			}
			tb.Logf("%s\n%s", head, l.buf)
		}
	})
	return l
}

// Write keeps p, dropping the oldest output beyond maxLog.
func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return len(p), nil
	}
	l.buf = append(l.buf, p...)
	if over := len(l.buf) - maxLog; over > 0 {
		l.buf = append(l.buf[:0], l.buf[over:]...)
		l.dropped = true
	}
	return len(p), nil
}

// Sync implements zapcore.WriteSyncer; Write has nothing buffered.
func (l *testLog) Sync() error { return nil }

// zapLogger returns a zap logger that writes errors and worse to l; etcd logs
// a lot at info and warn level during normal elections and shutdowns.
func (l *testLog) zapLogger() *zap.Logger {
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	return zap.New(zapcore.NewCore(enc, l, zapcore.ErrorLevel))
}
