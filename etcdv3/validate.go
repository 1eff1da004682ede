package etcdv3

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

var (
	// ErrNoKey indicates a client method needs a key but receives none.
	ErrNoKey = errors.New("no key provided")

	// ErrNoValue indicates a client method needs a value but receives none.
	ErrNoValue = errors.New("no value provided")

	// ErrMalformedKey is wrapped by the error for a key or prefix that is
	// not valid UTF-8, holds control characters, or has white space at
	// either end (a sign of a configuration mistake).
	ErrMalformedKey = errors.New("malformed key")

	// ErrNoPrefix indicates a watch needs a prefix but receives none.
	ErrNoPrefix = errors.New("no prefix provided")
)

// maxKeyLen keeps keys well under etcd's default request limit (1.5 MiB).
const maxKeyLen = 4096

// ValidateKey reports whether key can name a service instance in etcd.
func ValidateKey(key string) error {
	if key == "" {
		return ErrNoKey
	}
	return checkKeyText("key", key)
}

// ValidatePrefix reports whether prefix can be watched. An empty prefix is
// refused: it would watch the whole keyspace, which is never what a service
// discovery client means.
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return ErrNoPrefix
	}
	return checkKeyText("prefix", prefix)
}

func checkKeyText(what, s string) error {
	switch {
	case len(s) > maxKeyLen:
		return fmt.Errorf("%w: %s of %d bytes is longer than %d", ErrMalformedKey, what, len(s), maxKeyLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrMalformedKey, what, s)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: %s %q contains control characters", ErrMalformedKey, what, s)
	case strings.TrimSpace(s) != s:
		return fmt.Errorf("%w: %s %q has leading or trailing white space", ErrMalformedKey, what, s)
	}
	return nil
}
