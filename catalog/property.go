package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/etcdsd/etcdsd/instance"
)

// Properties that the Instancer of this package honours. Other names may be
// set too (any JSON value); they are stored and watched but change nothing.
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
var ErrBadProperty = errors.New("bad property")

// Property is an operator's override of one instance, or of every instance
// of a service when ID is empty. It lives at
// <properties root><service>/<id>/<name> (id "_" for the whole service)
// with the JSON Value.
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
	return checkValue(name, value)
}

// checkRef validates the key of a property: service, id ("" for the whole
// service) and name.
func checkRef(service, id, name string) error {
	if err := checkSegment("service name", service); err != nil {
		return err
	}
	if id != "" {
		if err := checkID(id); err != nil {
			return err
		}
	}
	if err := checkSegment("property name", name); err != nil {
		return fmt.Errorf("%w: %w", ErrBadProperty, err)
	}
	return nil
}

// checkValue checks that value is JSON and, for the properties this package
// honours, of the right type and range.
func checkValue(name, value string) error {
	if !json.Valid([]byte(value)) {
		return fmt.Errorf("%w: %s value %q is not JSON", ErrBadProperty, name, shorten(value))
	}
	switch name {
	case PropDisabled:
		if _, err := parseDisabled(value); err != nil {
			return err
		}
	case PropWeight:
		if _, err := parseWeight(value); err != nil {
			return err
		}
	}
	return nil
}

func parseDisabled(value string) (bool, error) {
	switch strings.TrimSpace(value) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%w: %s value %q is not true or false", ErrBadProperty, PropDisabled, shorten(value))
}

func parseWeight(value string) (int, error) {
	w, err := strconv.Atoi(strings.TrimSpace(value))
	if err != nil || w < 1 || w > instance.MaxWeight {
		return 0, fmt.Errorf("%w: %s value %q is not an integer in [1, %d]", ErrBadProperty, PropWeight, shorten(value), instance.MaxWeight)
	}
	return w, nil
}

// decodeProperty reads a property from its key and stored value.
func (l layout) decodeProperty(key, value string) (Property, error) {
	service, id, name, ok := l.parsePropertyKey(key)
	if !ok {
		return Property{}, fmt.Errorf("%w: key %q is not <properties root><service>/<id>/<name>", ErrBadProperty, shorten(key))
	}
	if err := checkValue(name, value); err != nil {
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

// propRef names one property of one service: id "" is service-wide.
type propRef struct{ id, name string }

// overrides are the properties of one service, looked up per instance.
type overrides map[propRef]string

func (o overrides) lookup(id, name string) (string, bool) {
	if v, ok := o[propRef{id, name}]; ok {
		return v, true
	}
	v, ok := o[propRef{"", name}]
	return v, ok
}

// apply returns inst with its weight override, and whether it is in
// rotation. Values that do not parse are ignored (decodeProperty keeps
// them out).
func (o overrides) apply(inst Instance) (Instance, bool) {
	if v, ok := o.lookup(inst.ID, PropDisabled); ok {
		if d, err := parseDisabled(v); err == nil && d {
			return inst, false
		}
	}
	if v, ok := o.lookup(inst.ID, PropWeight); ok {
		if w, err := parseWeight(v); err == nil {
			inst.Weight = w
		}
	}
	return inst, true
}

// Effective applies the properties among props that concern inst's service
// (inst.Name) to inst: it returns inst with its weight override and whether
// it is in rotation, as the Instancer of this package sees it.
func Effective(inst Instance, props []Property) (Instance, bool) {
	o := make(overrides)
	for _, p := range props {
		if p.Service == inst.Name {
			o[propRef{p.ID, p.Name}] = p.Value
		}
	}
	return o.apply(inst)
}
