package property

import (
	"errors"
	"strings"
	"testing"

	"github.com/etcdsd/etcdsd/instance"
)

func TestCheckValueAcceptsOnlyWhatTheOverlayCanApply(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		ok          bool
	}{
		{Disabled, "true", true},
		{Disabled, " false ", true},
		{Disabled, "yes", false},
		{Disabled, "1", false},
		{Weight, "5", true},
		{Weight, "0", false},
		{Weight, "-1", false},
		{Weight, "2.5", false},
		{Weight, "1048577", false},
		{"owner", `{"team":"a"}`, true},
		{"owner", `{"team":`, false},
	} {
		err := CheckValue(tc.name, tc.value)
		if (err == nil) != tc.ok {
			t.Errorf("CheckValue(%s=%s) = %v, want ok=%v", tc.name, tc.value, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, ErrBad) || !strings.Contains(err.Error(), tc.name+" value")) {
			t.Errorf("error %v does not wrap ErrBad or name %q", err, tc.name)
		}
	}
}

func TestApplyPrefersTheInstancesOwnValue(t *testing.T) {
	o := Overrides{
		{"", Disabled}:  "true",
		{"a", Disabled}: "false",
		{"a", Weight}:   "7",
		{"", Weight}:    "3",
	}
	a := instance.Instance{Address: "10.0.0.1:80", Weight: 2}
	if got, in := o.Apply("a", a); !in || got.Weight != 7 || got.Address != a.Address {
		t.Fatalf("a: %+v in rotation %v, want weight 7, in rotation", got, in)
	}
	if got, in := o.Apply("b", instance.Instance{Address: "10.0.0.2:80"}); in {
		t.Fatalf("b: %+v in rotation, want disabled by the property of every instance", got)
	}
	delete(o, Ref{"", Disabled})
	if got, in := o.Apply("b", instance.Instance{Address: "10.0.0.2:80"}); !in || got.Weight != 3 {
		t.Fatalf("b: %+v in rotation %v, want weight 3 of every instance", got, in)
	}
}

func TestApplyIgnoresValuesThatDoNotParse(t *testing.T) {
	o := Overrides{{"a", Disabled}: "maybe", {"a", Weight}: "0"}
	inst := instance.Instance{Address: "x:1", Weight: 2}
	if got, in := o.Apply("a", inst); !in || !got.Equal(inst) {
		t.Fatalf("got %+v in rotation %v, want the instance unchanged", got, in)
	}
}
