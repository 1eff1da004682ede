package etcdtest

import (
	"fmt"
	"os"
	"testing"
)

// ExampleTB is the part of testing.TB that etcdtest uses, for runnable
// Examples, which get no *testing.T but whose output go test checks. Its
// Fatal panics; Finish runs the cleanups, last registered first, as a test
// does when it ends. In a test, use the test's *testing.T instead.
type ExampleTB struct {
	testing.TB // nil: a method not defined here panics
	cleanups   []func()
}

// NewExampleTB returns an ExampleTB; defer its Finish.
func NewExampleTB() *ExampleTB { return &ExampleTB{} }

// Helper implements testing.TB.
func (t *ExampleTB) Helper() {}

// Failed implements testing.TB; an example that fails has panicked.
func (t *ExampleTB) Failed() bool { return false }

// Cleanup implements testing.TB.
func (t *ExampleTB) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }

// Log implements testing.TB; examples keep their output clean.
func (t *ExampleTB) Log(...any) {}

// Logf implements testing.TB.
func (t *ExampleTB) Logf(string, ...any) {}

// Fatal implements testing.TB by panicking.
func (t *ExampleTB) Fatal(args ...any) { panic(fmt.Sprint(args...)) }

// Fatalf implements testing.TB by panicking.
func (t *ExampleTB) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

// Skip implements testing.TB by panicking: an example cannot be skipped.
func (t *ExampleTB) Skip(args ...any) { panic(fmt.Sprint(args...)) }

// TempDir implements testing.TB with a directory removed by Finish.
func (t *ExampleTB) TempDir() string {
	dir, err := os.MkdirTemp("", "etcdtest-example")
	if err != nil {
		panic(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Finish runs the cleanups, last registered first.
func (t *ExampleTB) Finish() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
}
