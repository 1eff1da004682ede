package etcdv3

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/instance"
)

// FuzzValidateKey checks that ValidateKey and ValidatePrefix accept exactly
// the well-formed names, never panic, and name the bad value in the error.
func FuzzValidateKey(f *testing.F) {
	for _, s := range []string{"", "/services/a", " /services/a", "/services/a\n", "/svc/\x00", "\xff\xfe", "/services/ünï/", strings.Repeat("k", maxKeyLen+1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		wellFormed := s != "" && len(s) <= maxKeyLen && utf8.ValidString(s) &&
			strings.IndexFunc(s, unicode.IsControl) < 0 && strings.TrimSpace(s) == s
		for _, v := range []struct {
			what     string
			validate func(string) error
			empty    error
		}{{"key", ValidateKey, ErrNoKey}, {"prefix", ValidatePrefix, ErrNoPrefix}} {
			err := v.validate(s)
			if (err == nil) != wellFormed {
				t.Fatalf("Validate %s(%q) = %v; well-formed: %v", v.what, s, err, wellFormed)
			}
			switch {
			case err == nil:
			case s == "":
				if !errors.Is(err, v.empty) {
					t.Fatalf("Validate %s(\"\") = %v, want %v", v.what, err, v.empty)
				}
			case !errors.Is(err, ErrMalformedKey):
				t.Fatalf("Validate %s(%q) = %v, want it to wrap %v", v.what, s, err, ErrMalformedKey)
			case len(s) <= maxKeyLen && !strings.Contains(err.Error(), fmt.Sprintf("%q", s)):
				t.Fatalf("Validate %s(%q) = %v, want the error to name the value", v.what, s, err)
			}
		}
	})
}

// FuzzInstancerValue feeds any value to the Instancer next to a good one:
// a value is published if and only if checkValue accepts it, a malformed
// one is skipped, and the good instance is kept either way.
func FuzzInstancerValue(f *testing.F) {
	for _, v := range []string{"10.0.0.2:80", "", "  ", "{", `{"address":"10.0.0.2:80","weight":3}`, `{"address":""}`, `{"weight":-1,"address":"x"}`, "{\"address\":\"\xff\"}", "http://[::1]:80"} {
		f.Add(v)
	}
	const good = "10.0.0.1:80"
	f.Fuzz(func(t *testing.T, v string) {
		s := &Instancer{cache: instance.NewCache(), logger: log.NewNopLogger(), bad: map[string]string{}}
		defer s.cache.Stop()
		s.apply(Update{Revision: 2, Changes: []Change{
			{Type: Create, Key: "/svc/good", Value: good, Revision: 2},
			{Type: Create, Key: "/svc/fuzz", Value: v, Revision: 2},
		}})
		st := s.State()
		accepted := checkValue(v) == nil
		if accepted && strings.TrimSpace(v) == "" {
			t.Fatalf("checkValue accepted the blank value %q", v)
		}
		if accepted && strings.HasPrefix(strings.TrimSpace(v), "{") {
			if _, err := instance.Parse(v); err != nil {
				t.Fatalf("checkValue accepted %q, which instance.Parse rejects: %v", v, err)
			}
		}
		if st.Err != nil || !slices.Contains(st.Instances, good) {
			t.Fatalf("value %q: the good instance was lost: %+v", v, st)
		}
		if slices.Contains(st.Instances, v) != accepted {
			t.Fatalf("value %q: published %v, accepted %v (instances %q)", v, !accepted, accepted, st.Instances)
		}
		if !slices.IsSorted(st.Instances) || len(slices.Compact(slices.Clone(st.Instances))) != len(st.Instances) {
			t.Fatalf("instances not sorted and distinct: %q", st.Instances)
		}
		// Deleting the malformed key leaves the good one alone.
		s.apply(Update{Revision: 3, Changes: []Change{{Type: Delete, Key: "/svc/fuzz", PrevValue: v, Revision: 3}}})
		if st := s.State(); !slices.Equal(st.Instances, []string{good}) {
			t.Fatalf("after deleting %q: instances %q, want only %q", v, st.Instances, good)
		}
	})
}
