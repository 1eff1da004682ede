package catalog

import (
	"errors"
	"fmt"
	"strings"

	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/property"
)

// Default roots of the key layout.
const (
	// DefaultRoot holds the instances: <root><name>/<id>.
	DefaultRoot = "/services/"
	// DefaultPropertiesRoot holds the operator's properties. Those of the
	// instances under a prefix P live under the properties root, without
	// its final "/", followed by P: for the instances of service <name>,
	// <properties root><root without its leading "/"><name>/<id>/<property>,
	// and .../<name>/_/<property> for the whole service; with the default
	// roots, /etcdsd/properties/services/<name>/<id>/<property>. It is the
	// layout etcdv3's Instancers read too. It does not sit under
	// DefaultRoot, so an Instancer of a service never sees properties as
	// instances.
	DefaultPropertiesRoot = "/etcdsd/properties/"
)

// ErrBadName is wrapped by the error for a service name or instance id that
// cannot be a key segment.
var ErrBadName = errors.New("bad name")

// layout maps services, instances and properties to etcd keys.
type layout struct {
	root      string // instances, ends with "/"
	propsRoot string // the configured properties root, ends with "/"
	props     string // the properties of the instances under root: property.Prefix(propsRoot, root)
}

func newLayout(root, propsRoot string) (layout, error) {
	for _, r := range []struct{ what, v string }{{"root", root}, {"properties root", propsRoot}} {
		if err := etcdv3.ValidatePrefix(r.v); err != nil {
			return layout{}, fmt.Errorf("%s %q: %w", r.what, r.v, err)
		}
		if !strings.HasSuffix(r.v, "/") {
			return layout{}, fmt.Errorf("%s %q must end with \"/\"", r.what, r.v)
		}
	}
	if strings.HasPrefix(root, propsRoot) || strings.HasPrefix(propsRoot, root) {
		return layout{}, fmt.Errorf("root %q and properties root %q must not contain each other", root, propsRoot)
	}
	return layout{root: root, propsRoot: propsRoot, props: property.Prefix(propsRoot, root)}, nil
}

// checkSegment reports whether s can be one segment of a key: a service
// name or a property name.
func checkSegment(what, s string) error {
	if strings.Contains(s, "/") {
		return fmt.Errorf("%w: %s %q contains \"/\"", ErrBadName, what, s)
	}
	return checkText(what, s)
}

// checkText reports whether s can be part of a key.
func checkText(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty %s", ErrBadName, what)
	}
	if err := etcdv3.ValidateKey(s); err != nil {
		return fmt.Errorf("%w: %s %q: %w", ErrBadName, what, s, err)
	}
	return nil
}

// checkID reports whether Register can put an instance with id: one that
// can have properties, in one segment of its key.
func checkID(id string) error {
	if err := checkPropertyID(id); err != nil {
		return err
	}
	if strings.Contains(id, "/") {
		return fmt.Errorf("%w: instance id %q contains \"/\"", ErrBadName, id)
	}
	return nil
}

// checkPropertyID reports whether id can have properties. Unlike the ids
// Register puts, it may hold "/": go-kit programs register prefix +
// address (/services/app/http://10.0.0.1:80), and parseInstanceKey reads
// the id as everything after the service name. Such an id is stored in the
// property key as it is, unescaped, so that the keys of other ids stay
// what they were: a property key still names one id and one property,
// since the name follows its last "/" and names hold none
// (property.ParseKey, which the Instancers' overlay reads keys with).
func checkPropertyID(id string) error {
	if property.ReadsAsServiceWide(id) {
		return fmt.Errorf("%w: instance id %q is reserved for service-wide properties", ErrBadName, id)
	}
	return checkText("instance id", id)
}

func (l layout) instanceKey(service, id string) string { return l.root + service + "/" + id }

func (l layout) servicePrefix(service string) string { return l.root + service + "/" }

// propsPrefix is where the properties of service live: those of the
// instances under servicePrefix, as etcdv3's Instancer of that prefix reads
// them.
func (l layout) propsPrefix(service string) string { return l.props + service + "/" }

func (l layout) propertyKey(service, id, name string) string {
	return property.Key(l.propsPrefix(service), id, name)
}

// parseInstanceKey splits <root><name>/<id>. The id is everything after
// the first "/" so that keys written by go-kit programs
// ("/services/app/http://10.0.0.1:80") still read.
func (l layout) parseInstanceKey(key string) (service, id string, ok bool) {
	rest, found := strings.CutPrefix(key, l.root)
	if !found {
		return "", "", false
	}
	service, id, found = strings.Cut(rest, "/")
	if !found || service == "" || id == "" {
		return "", "", false
	}
	return service, id, true
}

// parsePropertyKey splits <props><name>/<id>/<property>; id is "" for a
// service-wide property.
func (l layout) parsePropertyKey(key string) (service, id, name string, ok bool) {
	rest, found := strings.CutPrefix(key, l.props)
	if !found {
		return "", "", "", false
	}
	service, _, found = strings.Cut(rest, "/")
	if !found || service == "" {
		return "", "", "", false
	}
	id, name, ok = property.ParseKey(l.propsPrefix(service), key)
	return service, id, name, ok
}
