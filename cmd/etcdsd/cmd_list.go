package main

import (
	"context"
	"io"
	"strconv"
	"strings"

	"github.com/etcdsd/etcdsd/catalog"
)

// listedInstance is one row of list: the instance as registered, and what
// the operator's properties make of it.
type listedInstance struct {
	Service  string            `json:"service"`
	ID       string            `json:"id"`
	Address  string            `json:"address"`
	Version  string            `json:"version,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Weight is the effective weight, after any override.
	Weight   int    `json:"weight"`
	Override bool   `json:"weightOverridden"`
	Disabled bool   `json:"disabled"`
	Key      string `json:"key"`
}

// runList lists the instances of one service, or of the services whose
// names start with a prefix ("app*"), with the properties applied.
func runList(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("list",
		"List the instances of a service, of the services whose names start with prefix, or of all,\nwith their effective weight and whether an operator drained them. A service with no\ninstance is an error (exit 1); a prefix that matches none lists nothing.")
	f := addCommonFlags(fs, true)
	pos, err := parseArgs(fs, args, 0, 1, stdout)
	if err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	var name string
	if len(pos) == 1 {
		name = pos[0]
	}
	c, cat, err := f.catalog(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	rctx, cancel := f.requestContext(ctx)
	defer cancel()

	var instances []catalog.Instance
	var props []catalog.Property
	switch prefix, isPrefix := strings.CutSuffix(name, "*"); {
	case isPrefix || name == "":
		instances, err = cat.Instances(rctx, prefix)
		if err == nil {
			props, err = cat.Properties(rctx, "")
		}
	default:
		instances, err = getService(rctx, cat, name)
		if err == nil {
			props, err = cat.Properties(rctx, name)
		}
	}
	if err != nil {
		return err
	}
	out := make([]listedInstance, len(instances))
	for i, inst := range instances {
		eff, enabled := catalog.Effective(inst, props)
		out[i] = listedInstance{
			Service: inst.Name, ID: inst.ID, Address: inst.Address, Version: inst.Version, Metadata: inst.Metadata,
			Weight: eff.EffectiveWeight(), Override: eff.Weight != inst.Weight, Disabled: !enabled,
			Key: cat.InstanceKey(inst.Name, inst.ID),
		}
	}
	if f.json() {
		return writeJSON(stdout, out)
	}
	rows := make([][]string, len(out))
	for i, l := range out {
		weight, state := strconv.Itoa(l.Weight), "up"
		if l.Override {
			weight += " (set)"
		}
		if l.Disabled {
			state = "drained"
		}
		rows[i] = []string{l.Service, l.ID, l.Address, orDash(l.Version), weight, state, formatMetadata(l.Metadata)}
	}
	return writeTable(stdout, []string{"SERVICE", "ID", "ADDRESS", "VERSION", "WEIGHT", "STATE", "METADATA"}, rows)
}
