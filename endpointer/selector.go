package endpointer

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/etcdsd/etcdsd/instance"
)

// contextKey is the type of the context key of a request's selector.
type contextKey struct{ name string }

// selectorKey is that key. A pointer, so that a context lookup compares
// two words instead of calling the runtime's interface comparison: picks
// read it on every request.
var selectorKey = &contextKey{"endpointer selector"}

// selector is what a request asks of the instance that serves it. It is
// immutable: WithVersion and WithMetadata return a new one.
type selector struct {
	version  string
	metadata [][2]string // sorted by key, one entry per key
	// key identifies the selector's group (see groupKey); shard is its
	// hash in a groupIndex, computed once here rather than on each pick.
	key  string
	hash uint64
	err  error
}

// WithVersion returns a context whose requests are served only by instances
// of the given version. An empty version removes the version constraint, so
// that WithVersion(ctx, r.Header.Get("X-Version")) routes to every instance
// when the header is absent. Instances without a version (plain addresses)
// never serve a request that asks for one.
func WithVersion(ctx context.Context, version string) context.Context {
	s := current(ctx)
	s.version = version
	return s.with(ctx)
}

// WithMetadata returns a context whose requests are served only by instances
// whose metadata has key set to value, in addition to any version or
// metadata already asked for by ctx. Asking again for the same key replaces
// its value. An empty key makes the requests fail with ErrBadSelector.
func WithMetadata(ctx context.Context, key, value string) context.Context {
	s := current(ctx)
	if key == "" {
		s.err = fmt.Errorf("endpointer: %w: empty metadata key (value %q)", ErrBadSelector, value)
		return s.with(ctx)
	}
	i, found := slices.BinarySearchFunc(s.metadata, key, func(kv [2]string, k string) int {
		return strings.Compare(kv[0], k)
	})
	if found {
		s.metadata[i][1] = value
	} else {
		s.metadata = slices.Insert(s.metadata, i, [2]string{key, value})
	}
	return s.with(ctx)
}

// current returns a copy of ctx's selector, or an empty one.
func current(ctx context.Context) selector {
	if s, ok := ctx.Value(selectorKey).(*selector); ok {
		c := *s
		c.metadata = slices.Clone(s.metadata)
		return c
	}
	return selector{}
}

// with stores s, with its key computed, in a child of ctx.
func (s selector) with(ctx context.Context) context.Context {
	s.key = groupKey(s.version, s.metadata)
	s.hash = keyHash(s.key)
	return context.WithValue(ctx, selectorKey, &s)
}

// fromContext returns ctx's selector, nil when there is none.
func fromContext(ctx context.Context) *selector {
	s, _ := ctx.Value(selectorKey).(*selector)
	return s
}

// empty reports whether s constrains nothing.
func (s *selector) empty() bool {
	return s.version == "" && len(s.metadata) == 0
}

// simple reports whether s's group is kept whenever it has a member: a
// version, a metadata pair, or both.
func (s *selector) simple() bool {
	return len(s.metadata) <= 1
}

// matches reports whether in is a candidate for s; nil is a plain
// address, with no version and no metadata.
func (s *selector) matches(in *instance.Instance) bool {
	if in == nil {
		return s.empty()
	}
	if s.version != "" && in.Version != s.version {
		return false
	}
	for _, kv := range s.metadata {
		v, ok := in.Metadata[kv[0]]
		if !ok || v != kv[1] {
			return false
		}
	}
	return true
}

// groupKey encodes a version and sorted metadata pairs without ambiguity:
// each string is prefixed by its length.
func groupKey(version string, metadata [][2]string) string {
	var b strings.Builder
	if version != "" {
		b.WriteByte('v')
		writeLen(&b, version)
	}
	for _, kv := range metadata {
		b.WriteByte('m')
		writeLen(&b, kv[0])
		writeLen(&b, kv[1])
	}
	return b.String()
}

func writeLen(b *strings.Builder, s string) {
	b.WriteString(strconv.Itoa(len(s)))
	b.WriteByte(':')
	b.WriteString(s)
}
