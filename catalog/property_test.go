package catalog

import (
	"errors"
	"strings"
	"testing"

	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/property"
)

// The names and the default root are spelled out for go doc; they are the
// ones the Instancers use.
func TestPropertyNamesAreTheOverlays(t *testing.T) {
	if PropDisabled != property.Disabled || PropWeight != property.Weight {
		t.Fatalf("catalog's names %q, %q; the overlay's %q, %q", PropDisabled, PropWeight, property.Disabled, property.Weight)
	}
	if DefaultPropertiesRoot != property.DefaultRoot {
		t.Fatalf("catalog's default root %q, the Instancers' %q", DefaultPropertiesRoot, property.DefaultRoot)
	}
}

func TestCheckPropertyValues(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		ok          bool
	}{
		{PropDisabled, "true", true},
		{PropDisabled, "false", true},
		{PropDisabled, "yes", false},
		{PropDisabled, "1", false},
		{PropWeight, "5", true},
		{PropWeight, "0", false},
		{PropWeight, "-1", false},
		{PropWeight, "2.5", false},
		{PropWeight, "1048577", false},
		{"owner", `{"team":"a"}`, true},
		{"owner", `{"team":`, false},
	} {
		err := checkProperty("app", "a-1", tc.name, tc.value)
		if (err == nil) != tc.ok {
			t.Errorf("checkProperty(%s=%s) = %v, want ok=%v", tc.name, tc.value, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, ErrBadProperty) || !strings.Contains(err.Error(), tc.name+" value")) {
			t.Errorf("error %v does not wrap ErrBadProperty or name %q", err, tc.name)
		}
	}
	if err := checkProperty("app", "_", PropDisabled, "true"); !errors.Is(err, ErrBadName) {
		t.Errorf("reserved id: %v", err)
	}
	if err := checkProperty("app", "", "a/b", "true"); !errors.Is(err, ErrBadProperty) {
		t.Errorf("bad property name: %v", err)
	}
}

// go-kit programs register keys of prefix + address, such as
// /services/app/http://10.0.0.1:80: every id parseInstanceKey reads from a
// key can have properties, stored under a key that the catalog and the
// Instancers' overlay both read back as that id.
func TestPropertiesOfIDsHoldingSlashes(t *testing.T) {
	for _, id := range []string{"http://10.0.0.1:80", "10.0.0.1:80/", "a/b/c", "/x", "a//b"} {
		_, parsed, ok := testLayout.parseInstanceKey(testLayout.instanceKey("app", id))
		if !ok || parsed != id {
			t.Fatalf("parseInstanceKey of %q's key = %q, %v", id, parsed, ok)
		}
		if err := checkProperty("app", id, PropDisabled, "true"); err != nil {
			t.Errorf("id %q: %v", id, err)
			continue
		}
		key := testLayout.propertyKey("app", id, PropDisabled)
		if want := "/etcdsd/properties/services/app/" + id + "/disabled"; key != want {
			t.Errorf("property key of %q = %q, want %q", id, key, want)
		}
		if s, got, name, ok := testLayout.parsePropertyKey(key); !ok || s != "app" || got != id || name != PropDisabled {
			t.Errorf("parsePropertyKey(%q) = %q, %q, %q, %v", key, s, got, name, ok)
		}
		if got, name, ok := property.ParseKey(testLayout.propsPrefix("app"), key); !ok || got != id || name != PropDisabled {
			t.Errorf("the overlay reads %q as %q, %q, %v", key, got, name, ok)
		}
	}
}

func TestEffectiveAppliesInstanceOverService(t *testing.T) {
	inst := Instance{Name: "app", ID: "a", Address: "10.0.0.1:80", Weight: 2}
	other := Instance{Name: "app", ID: "b", Address: "10.0.0.2:80"}
	props := []Property{
		{Service: "app", Name: PropDisabled, Value: "true"},
		{Service: "app", ID: "a", Name: PropDisabled, Value: "false"},
		{Service: "app", ID: "a", Name: PropWeight, Value: "7"},
		{Service: "web", ID: "b", Name: PropWeight, Value: "9"},
	}
	got, enabled := Effective(inst, props)
	if !enabled || got.Weight != 7 {
		t.Fatalf("a: %+v enabled=%v, want weight 7, enabled", got, enabled)
	}
	if got, enabled := Effective(other, props); enabled || got.Weight != 0 {
		t.Fatalf("b: %+v enabled=%v, want disabled by the service, weight untouched", got, enabled)
	}
	if got, enabled := Effective(other, props[3:]); !enabled || got.Weight != 0 {
		t.Fatalf("b with another service's property: %+v enabled=%v", got, enabled)
	}
}

// FuzzDecodeInstance feeds arbitrary keys and values to the instance
// decoder: it must never panic, and what it accepts must encode and decode
// to the same instance.
func FuzzDecodeInstance(f *testing.F) {
	f.Add("/services/app/a-1", `{"id":"a-1","name":"app","version":"v2","address":"10.0.0.1:9000","metadata":{"zone":"a"},"weight":10}`)
	f.Add("/services/app/a-1", "10.0.0.1:9000")
	f.Add("/services/app/a-1", `{"address":""}`)
	f.Add("/services/app", `{"address":"x"}`)
	f.Add("/services/app/1", `{"address":"x","weight":-1} `)
	f.Add("/services/app/1", `{"address":"x"}{}`)
	f.Fuzz(func(t *testing.T, key, value string) {
		inst, err := testLayout.decodeInstance(key, value)
		if err != nil {
			return
		}
		enc, err := inst.Encode()
		if err != nil {
			t.Fatalf("decoded %+v from %q but cannot encode it: %v", inst, value, err)
		}
		again, err := testLayout.decodeInstance(key, enc)
		if err != nil {
			t.Fatalf("re-decoding %q: %v", enc, err)
		}
		if again.Address != inst.Address || again.ID != inst.ID || again.Name != inst.Name || again.Weight != inst.Weight || again.Version != inst.Version {
			t.Fatalf("round trip changed %+v into %+v", inst, again)
		}
	})
}

// FuzzDecodeProperty feeds arbitrary keys and values to the property
// decoder: it must never panic; what it accepts must be a valid property
// that the Instancer can apply.
func FuzzDecodeProperty(f *testing.F) {
	f.Add("/etcdsd/properties/services/app/a-1/disabled", "true")
	f.Add("/etcdsd/properties/services/app/_/weight", "5")
	f.Add("/etcdsd/properties/services/app/a-1/weight", "1e3")
	f.Add("/etcdsd/properties/services/app/a/b/weight", " 7 ")
	f.Add("/etcdsd/properties/services/app/a-1/owner", `{"team":`)
	f.Fuzz(func(t *testing.T, key, value string) {
		p, err := testLayout.decodeProperty(key, value)
		if err != nil {
			return
		}
		if p.Service == "" || p.Name == "" || p.Value != value {
			t.Fatalf("decoded %+v from %q=%q", p, key, value)
		}
		inst, _ := Effective(Instance{Name: p.Service, ID: p.ID, Address: "x"}, []Property{p})
		if inst.Weight < 0 || inst.Weight > instance.MaxWeight {
			t.Fatalf("property %+v gives weight %d", p, inst.Weight)
		}
	})
}
