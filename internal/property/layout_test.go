package property

import (
	"errors"
	"strings"
	"testing"

	"github.com/etcdsd/etcdsd/instance"
)

func TestPrefixPutsTheInstancesPrefixUnderTheRoot(t *testing.T) {
	for _, tc := range []struct{ root, prefix, want string }{
		{DefaultRoot, "/services/greeter/", "/etcdsd/properties/services/greeter/"},
		{"/ops/", "/services/", "/ops/services/"},
		{DefaultRoot, "/services/greeter", "/etcdsd/properties/services/greeter"},
	} {
		if got := Prefix(tc.root, tc.prefix); got != tc.want {
			t.Errorf("Prefix(%q, %q) = %q, want %q", tc.root, tc.prefix, got, tc.want)
		}
	}
}

func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		configured, root string
		on               bool
	}{
		{"", DefaultRoot, true},
		{Off, "", false},
		{"/ops/", "/ops/", true},
	} {
		if root, on := Resolve(tc.configured); root != tc.root || on != tc.on {
			t.Errorf("Resolve(%q) = %q, %v; want %q, %v", tc.configured, root, on, tc.root, tc.on)
		}
	}
}

func TestKeyAndParseKeyRoundTrip(t *testing.T) {
	const pp = "/etcdsd/properties/services/app/"
	for _, tc := range []struct{ id, key string }{
		{"a-1", pp + "a-1/weight"},
		{"", pp + "_/weight"},
		{"http://10.0.0.1:80", pp + "http://10.0.0.1:80/weight"}, // a go-kit style id
	} {
		key := Key(pp, tc.id, Weight)
		if key != tc.key {
			t.Fatalf("Key(%q) = %q, want %q", tc.id, key, tc.key)
		}
		id, name, ok := ParseKey(pp, key)
		if !ok || id != tc.id || name != Weight {
			t.Fatalf("ParseKey(%q) = %q, %q, %v", key, id, name, ok)
		}
	}
	for _, k := range []string{pp, pp + "a", pp + "a/", pp + "/w", "/other/a/w"} {
		if id, name, ok := ParseKey(pp, k); ok {
			t.Errorf("ParseKey(%q) accepted: %q, %q", k, id, name)
		}
	}
}

func TestDecodeRejectsBadKeysAndValuesNamingThem(t *testing.T) {
	decode := Decode("/p/app/")
	if _, err := decode("/p/app/a/disabled", "true"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ key, value, want string }{
		{"/p/app/a", "true", `key "/p/app/a"`},
		{"/p/app/a/weight", "0", `weight value "0"`},
		{"/p/app/a/owner", "{", `owner value "{"`},
	} {
		_, err := decode(tc.key, tc.value)
		if !errors.Is(err, ErrBad) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("decode(%q, %q) = %v, want ErrBad naming %s", tc.key, tc.value, err, tc.want)
		}
	}
}

// FuzzDecode feeds arbitrary keys and values to the properties' parser: it
// must never panic, and what it accepts must apply to an instance without
// giving it a weight out of range.
func FuzzDecode(f *testing.F) {
	const pp = "/etcdsd/properties/services/app/"
	f.Add(pp+"a-1/disabled", "true")
	f.Add(pp+"_/weight", "5")
	f.Add(pp+"a-1/weight", "1e3")
	f.Add(pp+"a/b/weight", " 7 ")
	f.Add(pp+"a-1/owner", `{"team":`)
	decode := Decode(pp)
	f.Fuzz(func(t *testing.T, key, value string) {
		if _, err := decode(key, value); err != nil {
			return
		}
		id, name, ok := ParseKey(pp, key)
		if !ok || name == "" {
			t.Fatalf("accepted %q but ParseKey gives %q, %q, %v", key, id, name, ok)
		}
		inst, _ := Overrides{{id, name}: value}.Apply(id, instance.Instance{Address: "x"})
		if inst.Weight < 0 || inst.Weight > instance.MaxWeight {
			t.Fatalf("property %q=%q gives weight %d", key, value, inst.Weight)
		}
	})
}
