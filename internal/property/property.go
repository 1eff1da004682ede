// Package property is etcdsd's one implementation of the operator's
// properties: their names and values, where those of the instances under a
// prefix live in etcd, and the Overlay that applies them to the instances a
// pipeline mirrors. The Instancers of packages etcdv3 and catalog are both
// built on it.
package property

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/etcdsd/etcdsd/instance"
)

// The properties an Overlay honours. Other names may be stored (any JSON
// value); they change nothing.
const (
	// Disabled takes an instance out of rotation while its process keeps
	// running: JSON true or false.
	Disabled = "disabled"
	// Weight overrides an instance's weight: a JSON integer in
	// [1, instance.MaxWeight].
	Weight = "weight"
)

// ErrBad is wrapped by the error for a property name or value that cannot
// be stored or applied.
var ErrBad = errors.New("bad property")

// CheckValue checks that value is JSON and, for the properties an Overlay
// honours, of the right type and range.
func CheckValue(name, value string) error {
	if !json.Valid([]byte(value)) {
		return fmt.Errorf("%w: %s value %q is not JSON", ErrBad, name, shorten(value))
	}
	switch name {
	case Disabled:
		if _, err := ParseDisabled(value); err != nil {
			return err
		}
	case Weight:
		if _, err := ParseWeight(value); err != nil {
			return err
		}
	}
	return nil
}

// ParseDisabled reads the value of Disabled.
func ParseDisabled(value string) (bool, error) {
	switch strings.TrimSpace(value) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%w: %s value %q is not true or false", ErrBad, Disabled, shorten(value))
}

// ParseWeight reads the value of Weight.
func ParseWeight(value string) (int, error) {
	w, err := strconv.Atoi(strings.TrimSpace(value))
	if err != nil || w < 1 || w > instance.MaxWeight {
		return 0, fmt.Errorf("%w: %s value %q is not an integer in [1, %d]", ErrBad, Weight, shorten(value), instance.MaxWeight)
	}
	return w, nil
}

// Ref names one property of the instances under a prefix: ID is the
// instance's (its key without the prefix), "" for every instance.
type Ref struct{ ID, Name string }

// Overrides are the properties of the instances under one prefix, by Ref,
// with their JSON values.
type Overrides map[Ref]string

// Lookup returns the value of property name for instance id: its own, or
// else the one set for every instance.
func (o Overrides) Lookup(id, name string) (string, bool) {
	if v, ok := o[Ref{id, name}]; ok {
		return v, true
	}
	v, ok := o[Ref{"", name}]
	return v, ok
}

// Apply returns inst, the instance of id, with its weight override, and
// whether it is in rotation. An instance's own Disabled false wins over a
// true set for every instance. Values that do not parse are ignored.
func (o Overrides) Apply(id string, inst instance.Instance) (instance.Instance, bool) {
	if v, ok := o.Lookup(id, Disabled); ok {
		if d, err := ParseDisabled(v); err == nil && d {
			return inst, false
		}
	}
	if v, ok := o.Lookup(id, Weight); ok {
		if w, err := ParseWeight(v); err == nil {
			inst.Weight = w
		}
	}
	return inst, true
}

// shorten keeps error messages readable when a value is huge.
func shorten(s string) string {
	const max = 120
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
