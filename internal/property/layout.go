package property

import (
	"fmt"
	"strings"

	"github.com/etcdsd/etcdsd/instance"
	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// DefaultRoot is where properties live unless configured otherwise.
const DefaultRoot = "/etcdsd/properties/"

// Off, as a properties root, turns properties off.
const Off = "-"

// ServiceWide is the id segment of a property that applies to every
// instance under a prefix.
const ServiceWide = "_"

// ClientRoot returns the properties root configured on an etcdv3 client
// (its ClientOptions.PropertiesRoot; "" when unset or for another value).
// Package etcdv3 sets it, so that catalog takes its default from the
// client, the one place a program configures it, without etcdv3 exporting
// its options.
var ClientRoot = func(client any) string { return "" }

// Resolve turns a configured properties root into the root to use and
// whether properties are read at all: "" is DefaultRoot, Off is none.
func Resolve(configured string) (root string, on bool) {
	switch configured {
	case "":
		return DefaultRoot, true
	case Off:
		return "", false
	}
	return configured, true
}

// Prefix returns where the properties of the instances under prefix live:
// the root, without its final "/", followed by prefix. For root
// "/etcdsd/properties/" and prefix "/services/greeter/" it is
// "/etcdsd/properties/services/greeter/".
func Prefix(root, prefix string) string {
	return strings.TrimSuffix(root, "/") + prefix
}

// Key returns the key of property name of instance id ("" for every
// instance) among the properties under propsPrefix:
// <propsPrefix><id>/<name>, or <propsPrefix>_/<name>.
func Key(propsPrefix, id, name string) string {
	if id == "" {
		id = ServiceWide
	}
	return propsPrefix + id + "/" + name
}

// ParseKey splits a key under propsPrefix into the instance id ("" for
// every instance) and the property name. The name follows the last "/",
// so that ids holding a "/" (go-kit style keys such as
// "/services/app/http://10.0.0.1:80") still read.
func ParseKey(propsPrefix, key string) (id, name string, ok bool) {
	rest, found := strings.CutPrefix(key, propsPrefix)
	if !found {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/")
	if i <= 0 || i == len(rest)-1 {
		return "", "", false
	}
	id, name = rest[:i], rest[i+1:]
	if id == ServiceWide {
		id = ""
	}
	return id, name, true
}

// ReadsAsServiceWide reports whether the property key of instance id
// would read as a service-wide one under some Instancer's prefix: id is
// ServiceWide or ends in "/"+ServiceWide (the key of id "v1/_" of service
// app is the service-wide key of an Instancer on /services/app/v1/).
// Such an id can have no property of its own.
func ReadsAsServiceWide(id string) bool {
	return id == ServiceWide || strings.HasSuffix(id, "/"+ServiceWide)
}

// Decode returns the pipeline parser of the properties under propsPrefix:
// it accepts a key of the shape Key makes with a value CheckValue accepts,
// so that a Feed leaves out (and logs once) any other.
func Decode(propsPrefix string) pipeline.ParseFunc {
	return func(key, value string) (instance.Instance, error) {
		_, name, ok := ParseKey(propsPrefix, key)
		if !ok {
			return instance.Instance{}, fmt.Errorf("%w: key %q is not %s<id>/<name>", ErrBad, shorten(key), propsPrefix)
		}
		if err := CheckValue(name, value); err != nil {
			return instance.Instance{}, fmt.Errorf("key %q: %w", shorten(key), err)
		}
		return instance.Instance{}, nil
	}
}
