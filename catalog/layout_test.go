package catalog

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/property"
)

var testLayout = mustLayout(DefaultRoot, DefaultPropertiesRoot)

func mustLayout(root, propsRoot string) layout {
	l, err := newLayout(root, propsRoot)
	if err != nil {
		panic(err)
	}
	return l
}

func TestNewLayoutRejectsBadRoots(t *testing.T) {
	for _, tc := range []struct{ root, props, want string }{
		{"", "/p/", `root ""`},
		{"/services", "/p/", `root "/services" must end`},
		{"/s/", "/s/props/", "must not contain each other"},
		{"/s/", "/", "must not contain each other"},
		{"/s/", " /p/", `properties root " /p/"`},
	} {
		_, err := newLayout(tc.root, tc.props)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("newLayout(%q, %q) = %v, want error containing %q", tc.root, tc.props, err, tc.want)
		}
	}
}

func TestKeysRoundTrip(t *testing.T) {
	key := testLayout.instanceKey("app", "a-1")
	if key != "/services/app/a-1" {
		t.Fatalf("instance key = %q", key)
	}
	if s, id, ok := testLayout.parseInstanceKey(key); !ok || s != "app" || id != "a-1" {
		t.Fatalf("parseInstanceKey(%q) = %q, %q, %v", key, s, id, ok)
	}
	for _, tc := range []struct{ id, key string }{
		{"a-1", "/etcdsd/properties/services/app/a-1/weight"},
		{"", "/etcdsd/properties/services/app/_/weight"},
	} {
		key := testLayout.propertyKey("app", tc.id, PropWeight)
		if key != tc.key {
			t.Fatalf("property key = %q, want %q", key, tc.key)
		}
		s, id, name, ok := testLayout.parsePropertyKey(key)
		if !ok || s != "app" || id != tc.id || name != PropWeight {
			t.Fatalf("parsePropertyKey(%q) = %q, %q, %q, %v", key, s, id, name, ok)
		}
	}
}

// The properties of a service live where etcdv3's Instancer of the
// service's prefix reads them: the properties root followed by that prefix.
func TestPropertiesPrefixFollowsTheInstancesPrefix(t *testing.T) {
	for _, tc := range []struct{ root, props, want string }{
		{DefaultRoot, DefaultPropertiesRoot, "/etcdsd/properties/services/app/"},
		{"/apps/", "/ops/props/", "/ops/props/apps/app/"},
	} {
		l := mustLayout(tc.root, tc.props)
		if got := l.propsPrefix("app"); got != tc.want {
			t.Errorf("roots %q, %q: properties of app under %q, want %q", tc.root, tc.props, got, tc.want)
		}
		if got, want := l.propsPrefix("app"), property.Prefix(tc.props, l.servicePrefix("app")); got != want {
			t.Errorf("catalog's %q is not the Instancer's %q", got, want)
		}
	}
}

func TestParseKeysRefusesOtherShapes(t *testing.T) {
	for _, k := range []string{"/other/app/1", "/services/app", "/services/app/", "/services//1"} {
		if _, _, ok := testLayout.parseInstanceKey(k); ok {
			t.Errorf("parseInstanceKey(%q) accepted", k)
		}
	}
	for _, k := range []string{
		"/etcdsd/properties/services/app", "/etcdsd/properties/services/app/1", "/etcdsd/properties/services/app/1/",
		"/etcdsd/properties/services/app//w", "/x/app/1/w",
		"/etcdsd/properties/app/1/w", // the layout before the properties prefix followed the instances'
	} {
		if _, _, _, ok := testLayout.parsePropertyKey(k); ok {
			t.Errorf("parsePropertyKey(%q) accepted", k)
		}
	}
}

func TestGoKitStyleKeysRead(t *testing.T) {
	inst, err := testLayout.decodeInstance("/services/app/http://10.0.0.1:80", "http://10.0.0.1:80")
	if err != nil {
		t.Fatal(err)
	}
	if inst.Name != "app" || inst.ID != "http://10.0.0.1:80" || inst.Address != "http://10.0.0.1:80" {
		t.Fatalf("decoded %+v", inst)
	}
}

// TestPropertyIDsWhoseLastSegmentIsServiceWideAreRefused: the property key
// of id "v1/_" is the service-wide key of an Instancer on the sub-prefix
// /services/app/v1/, so a property of it would hide or reweigh every
// instance there.
func TestPropertyIDsWhoseLastSegmentIsServiceWideAreRefused(t *testing.T) {
	for _, id := range []string{"_", "v1/_", "http://10.0.0.1:80/_"} {
		if err := checkPropertyID(id); !errors.Is(err, ErrBadName) || !strings.Contains(err.Error(), fmt.Sprintf("%q", id)) {
			t.Errorf("checkPropertyID(%q) = %v, want ErrBadName naming it", id, err)
		}
	}
	for _, id := range []string{"a", "http://10.0.0.1:80", "_/x", "a_", "v1/_x"} {
		if err := checkPropertyID(id); err != nil {
			t.Errorf("checkPropertyID(%q) = %v, want nil", id, err)
		}
	}
}

func TestKeyIsTheTruthAboutIdentity(t *testing.T) {
	inst, err := testLayout.decodeInstance("/services/app/a-1", `{"id":"other","name":"other","address":"10.0.0.1:80","version":"v2"}`)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Name != "app" || inst.ID != "a-1" || inst.Version != "v2" {
		t.Fatalf("decoded %+v", inst)
	}
}

func TestCheckSegmentNamesTheBadValue(t *testing.T) {
	for _, s := range []string{"", "a/b", " a", "a\x00"} {
		err := checkSegment("service name", s)
		if !errors.Is(err, ErrBadName) || !strings.Contains(err.Error(), "service name") {
			t.Errorf("checkSegment(%q) = %v", s, err)
		}
	}
	if err := checkID("_"); !errors.Is(err, ErrBadName) || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("checkID(_) = %v", err)
	}
}

func TestDecodeInstanceRejectsMalformedJSON(t *testing.T) {
	_, err := testLayout.decodeInstance("/services/app/1", `{"address":`)
	if !errors.Is(err, instance.ErrMalformed) || !strings.Contains(err.Error(), "/services/app/1") {
		t.Fatalf("err = %v", err)
	}
}
