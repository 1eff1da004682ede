package instance

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseAcceptsPlainAddressesAndJSON(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  Instance
	}{
		{"10.0.0.1:9000", Instance{Address: "10.0.0.1:9000"}},
		{"http://10.0.0.1:8080", Instance{Address: "http://10.0.0.1:8080"}},
		{`{"id":"app-1","name":"app","version":"v2","address":"10.0.0.1:9000","metadata":{"zone":"a"},"weight":10}`,
			Instance{ID: "app-1", Name: "app", Version: "v2", Address: "10.0.0.1:9000", Metadata: map[string]string{"zone": "a"}, Weight: 10}},
		{` {"address":"a:1","extra":"ignored for forward compatibility"} `, Instance{Address: "a:1"}},
	} {
		got, err := Parse(tc.value)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.value, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.value, got, tc.want)
		}
	}
}

func TestParseRejectsMalformedValuesNamingThem(t *testing.T) {
	for _, tc := range []struct{ value, why string }{
		{"", "empty address"},
		{"has space:80", "white space"},
		{`{"address":`, "invalid JSON"},
		{`{"name":"app"}`, "empty address"},
		{`{"address":"a:1","weight":-1}`, "weight -1"},
		{`{"address":"a:1","metadata":{"zone":7}}`, "invalid JSON"},
		{`{"address":"a:1"} {"address":"b:1"}`, "trailing data"},
		{"a\x00b", "control"},
	} {
		_, err := Parse(tc.value)
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want error", tc.value)
			continue
		}
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) error %v does not wrap ErrMalformed", tc.value, err)
		}
		if !strings.Contains(err.Error(), tc.why) {
			t.Errorf("Parse(%q) error %q does not say %q", tc.value, err, tc.why)
		}
	}
}

func TestEncodeRoundTrips(t *testing.T) {
	in := Instance{ID: "1", Name: "app", Version: "v1", Address: "127.0.0.1:1", Metadata: map[string]string{"zone": "b"}, Weight: 3}
	v, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	out, err := Parse(v)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip: %+v → %s → %+v", in, v, out)
	}
	if _, err := (Instance{ID: "x"}).Encode(); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Fatalf("Encode of an instance without address: err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"10.0.0.1:9000", `{"address":"a:1","weight":2,"metadata":{"k":"v"}}`, `{"address":""}`, "{", " ", "http://x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		inst, err := Parse(value)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if inst.Address == "" || inst.Weight < 0 || inst.Weight > MaxWeight {
			t.Fatalf("Parse(%q) accepted an invalid instance %+v", value, inst)
		}
		// Whatever parses must encode and parse back to the same thing.
		enc, err := inst.Encode()
		if err != nil {
			t.Fatalf("Encode(%+v): %v", inst, err)
		}
		again, err := Parse(enc)
		if err != nil || !reflect.DeepEqual(normalize(inst), normalize(again)) {
			t.Fatalf("round trip of %q: %+v, %v", value, again, err)
		}
	})
}

// normalize treats a nil and an empty metadata map alike.
func normalize(i Instance) Instance {
	if len(i.Metadata) == 0 {
		i.Metadata = nil
	}
	return i
}

func TestEqualAndIsPlain(t *testing.T) {
	a := Instance{ID: "a", Address: "10.0.0.1:80", Metadata: map[string]string{"zone": "x"}, Weight: 2}
	b := a
	b.Metadata = map[string]string{"zone": "x"}
	if !a.Equal(b) {
		t.Fatal("equal instances with distinct metadata maps compare unequal")
	}
	b.Metadata["zone"] = "y"
	if a.Equal(b) {
		t.Fatal("a metadata difference is not seen")
	}
	plain, _ := Parse("10.0.0.1:80")
	if !plain.IsPlain("10.0.0.1:80") {
		t.Fatal("a plain value's instance is not plain")
	}
	js, _ := Parse(`{"address":"10.0.0.1:80"}`)
	if js.IsPlain(`{"address":"10.0.0.1:80"}`) || a.IsPlain("10.0.0.1:80") {
		t.Fatal("a JSON value's instance, or one with more than an address, is plain")
	}
}
