package catalog

import (
	"fmt"

	"github.com/etcdsd/etcdsd/internal/property"
)

// Properties that the Instancer of this package (and etcdv3's, on the
// client etcdv3.NewClient returns) honours. Other names may be set too (any
// JSON value); they are stored and watched but change nothing.
const (
	// PropDisabled takes an instance (or a whole service) out of rotation
	// while its process keeps running: JSON true or false. An instance's
	// own false wins over its service's true.
	PropDisabled = "disabled"
	// PropWeight overrides the instance's weight: a JSON integer in
	// [1, instance.MaxWeight].
	PropWeight = "weight"
)

// ErrBadProperty is wrapped by the error for a property name or value that
// cannot be stored.
var ErrBadProperty = property.ErrBad

// Property is an operator's override of one instance, or of every instance
// of a service when ID is empty. It lives at
// <properties root><root without its leading "/"><service>/<id>/<name>
// (id "_" for the whole service), with the default roots
// /etcdsd/properties/services/<service>/<id>/<name>, with the JSON Value.
// An id holding "/", as go-kit style keys have
// (/services/app/http://10.0.0.1:80), is part of the key as it is:
// /etcdsd/properties/services/app/http://10.0.0.1:80/disabled.
type Property struct {
	Service string `json:"service"`
	ID      string `json:"id,omitempty"`
	Name    string `json:"name"`
	Value   string `json:"value"`
}

// checkProperty validates a property about to be written.
func checkProperty(service, id, name, value string) error {
	if err := checkRef(service, id, name); err != nil {
		return err
	}
	return property.CheckValue(name, value)
}

// checkRef validates the key of a property: service, id ("" for the whole
// service) and name.
func checkRef(service, id, name string) error {
	if err := checkSegment("service name", service); err != nil {
		return err
	}
	if id != "" {
		if err := checkPropertyID(id); err != nil {
			return err
		}
	}
	if err := checkSegment("property name", name); err != nil {
		return fmt.Errorf("%w: %w", ErrBadProperty, err)
	}
	return nil
}

// decodeProperty reads a property from its key and stored value.
func (l layout) decodeProperty(key, value string) (Property, error) {
	service, id, name, ok := l.parsePropertyKey(key)
	if !ok {
		return Property{}, fmt.Errorf("%w: key %q is not %s<service>/<id>/<name>", ErrBadProperty, shorten(key), l.props)
	}
	if err := property.CheckValue(name, value); err != nil {
		return Property{}, fmt.Errorf("key %q: %w", shorten(key), err)
	}
	return Property{Service: service, ID: id, Name: name, Value: value}, nil
}

// shorten keeps error messages readable when a value is huge.
func shorten(s string) string {
	const max = 120
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// Effective applies the properties among props that concern inst's service
// (inst.Name) to inst: it returns inst with its weight override and whether
// it is in rotation, as the Instancer of this package sees it.
func Effective(inst Instance, props []Property) (Instance, bool) {
	o := make(property.Overrides)
	for _, p := range props {
		if p.Service == inst.Name {
			o[property.Ref{ID: p.ID, Name: p.Name}] = p.Value
		}
	}
	return o.Apply(inst.ID, inst)
}
