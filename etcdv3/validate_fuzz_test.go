package etcdv3

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
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
