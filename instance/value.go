package instance

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxWeight is the largest weight an instance may carry.
const MaxWeight = 1 << 20

// ErrMalformed is wrapped by every error Parse returns, for errors.Is.
var ErrMalformed = errors.New("malformed instance value")

// Instance is the parsed form of an instance value.
//
// A plain value such as "10.0.0.1:9000" or "http://10.0.0.1:8080" parses to
// an Instance with only Address set. A JSON value carries the other fields:
//
//	{"id":"app-1","name":"app","version":"v2","address":"10.0.0.1:9000",
//	 "metadata":{"zone":"a"},"weight":10}
type Instance struct {
	ID       string            `json:"id,omitempty"`
	Name     string            `json:"name,omitempty"`
	Version  string            `json:"version,omitempty"`
	Address  string            `json:"address"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Weight is the relative share of traffic; 0 means the default, 1.
	Weight int `json:"weight,omitempty"`
}

// EffectiveWeight is Weight, or 1 when Weight is unset.
func (i Instance) EffectiveWeight() int {
	if i.Weight <= 0 {
		return 1
	}
	return i.Weight
}

// Equal reports whether i and o hold the same fields, metadata included.
func (i Instance) Equal(o Instance) bool {
	return i.ID == o.ID && i.Name == o.Name && i.Version == o.Version &&
		i.Address == o.Address && i.Weight == o.Weight && maps.Equal(i.Metadata, o.Metadata)
}

// IsPlain reports whether i is what Parse gives for the plain value v: v as
// the address and nothing else. Caches use it to keep no parsed copy of
// such values.
func (i Instance) IsPlain(v string) bool {
	return i.Equal(Instance{Address: v})
}

// Parse parses an instance value: a JSON object when it starts with '{',
// a plain address otherwise. The error names the value and what is wrong
// with it, and wraps ErrMalformed.
func Parse(value string) (Instance, error) {
	trimmed := strings.TrimSpace(value)
	if strings.HasPrefix(trimmed, "{") {
		return parseJSON(value, trimmed)
	}
	if err := checkAddress(value); err != nil {
		return Instance{}, malformed(value, err.Error())
	}
	return Instance{Address: value}, nil
}

// Encode returns the JSON value for i, after checking it as Parse would.
func (i Instance) Encode() (string, error) {
	if err := i.validate(); err != nil {
		return "", fmt.Errorf("instance: encode %q: %w: %s", i.ID, ErrMalformed, err)
	}
	b, err := json.Marshal(i)
	if err != nil {
		return "", fmt.Errorf("instance: encode %q: %w", i.ID, err)
	}
	return string(b), nil
}

func parseJSON(value, trimmed string) (Instance, error) {
	dec := json.NewDecoder(strings.NewReader(trimmed))
	var inst Instance
	if err := dec.Decode(&inst); err != nil {
		return Instance{}, malformed(value, "invalid JSON: "+err.Error())
	}
	if dec.More() {
		return Instance{}, malformed(value, "trailing data after the JSON object")
	}
	if err := inst.validate(); err != nil {
		return Instance{}, malformed(value, err.Error())
	}
	return inst, nil
}

func (i Instance) validate() error {
	if err := checkAddress(i.Address); err != nil {
		return err
	}
	if i.Weight < 0 || i.Weight > MaxWeight {
		return fmt.Errorf("weight %d out of range [0, %d]", i.Weight, MaxWeight)
	}
	return nil
}

func checkAddress(addr string) error {
	if addr == "" {
		return errors.New("empty address")
	}
	if strings.IndexFunc(addr, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("address %q contains white space or control characters", addr)
	}
	if !utf8.ValidString(addr) {
		return fmt.Errorf("address %q is not valid UTF-8", addr)
	}
	return nil
}

func malformed(value, why string) error {
	return fmt.Errorf("instance: %w %q: %s", ErrMalformed, shorten(value), why)
}

// shorten keeps error messages readable when a value is huge.
func shorten(s string) string {
	const max = 120
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
