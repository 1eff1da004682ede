package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/etcdsd/etcdsd/catalog"
	"github.com/etcdsd/etcdsd/instance"
)

// propertyChange is what drain, undrain and set-weight print with -o json.
type propertyChange struct {
	Service string `json:"service"`
	// ID is the instance's id; absent for the whole service (--all).
	ID       string `json:"id,omitempty"`
	Property string `json:"property"`
	// Value is the JSON value set, or empty when the property was cleared.
	Value string `json:"value,omitempty"`
	// StillDrained, after undrain, are the drains that keep what was
	// undrained out of rotation: the service's own for an instance, the
	// instances' own for the whole service.
	StillDrained []catalog.Property `json:"stillDrained,omitempty"`
	// HonouredBy and NotHonouredBy say which clients apply the change.
	HonouredBy    []string `json:"honouredBy"`
	NotHonouredBy []string `json:"notHonouredBy"`
}

// Who applies the operator's properties: etcdsd's Instancers on the client
// etcdv3.NewClient returns, and what is built on them. go-kit's own
// sd/etcdv3 and any other Client (a fake has no keys) read none.
var (
	honouredBy = []string{
		"etcdsd etcdv3.NewInstancer on the client of etcdv3.NewClient",
		"etcdsd catalog Instancer",
		"what is built on those: go-kit sd.NewEndpointer and lb, etcdsd endpointer, grpcsd resolver",
	}
	weightHonouredBy = []string{
		"the typed weight of etcdsd's etcdv3 (client of etcdv3.NewClient) and catalog Instancers",
		"what reads it: etcdsd endpointer (Weighted strategy), grpcsd balancer",
	}
	notHonouredBy = []string{
		"go-kit's own sd/etcdv3",
		"an etcdsd Instancer on another etcdv3.Client (such as a test fake)",
	}
	weightNotHonouredBy = append([]string{
		"go-kit sd.NewEndpointer and lb (no weights; the value their factory receives never changes)",
	}, notHonouredBy...)
)

// runDrain takes an instance, or a whole service, out of rotation.
func runDrain(ctx context.Context, args []string, stdout, _ io.Writer) error {
	return propertyCommand(ctx, args, stdout, "drain",
		"Take an instance out of rotation while its process keeps running: etcdsd's etcdv3 and\ncatalog Instancers on the real client (hence go-kit's sd.NewEndpointer and lb, etcdsd's\nendpointer and grpcsd on them) drop it within one watch event; go-kit's own sd/etcdv3 does not.\nWith --all, the whole service: every instance, present and future, except one whose own\ndisabled property is false.",
		func(string) (string, error) { return "true", nil })
}

// runUndrain puts a drained instance, or service, back into rotation.
func runUndrain(ctx context.Context, args []string, stdout, _ io.Writer) error {
	return propertyCommand(ctx, args, stdout, "undrain",
		"Put an instance taken out by drain back into rotation, or with --all a service taken out\nby drain --all. Each removes its own drain only: what the other still drains is named.",
		func(string) (string, error) { return "", nil })
}

// runSetWeight overrides an instance's weight.
func runSetWeight(ctx context.Context, args []string, stdout, _ io.Writer) error {
	return propertyCommand(ctx, args, stdout, "set-weight",
		"Override an instance's weight (its relative share of traffic), or remove the override\nwith --clear. etcdsd's endpointer (Weighted) and gRPC balancer follow it on etcdsd's etcdv3\nand catalog Instancers; the value go-kit factories receive never changes.",
		func(weight string) (string, error) {
			if weight == "" {
				return "", nil
			}
			if w, err := strconv.Atoi(weight); err != nil || w < 1 || w > instance.MaxWeight {
				return "", usageError{fmt.Errorf("weight %q is not an integer in [1, %d]", weight, instance.MaxWeight)}
			}
			return weight, nil
		})
}

// propertyCommand runs drain, undrain or set-weight: value maps the
// optional third argument (the weight) to the JSON value to set, or "" to
// clear the property.
func propertyCommand(ctx context.Context, args []string, stdout io.Writer, name, summary string, value func(arg string) (string, error)) error {
	prop, minArgs, maxArgs := catalog.PropDisabled, 2, 2
	if name == "set-weight" {
		prop, maxArgs = catalog.PropWeight, 3
	}
	fs := newFlagSet(name, summary)
	f := addCommonFlags(fs, true)
	force := fs.Bool("force", false, "act even if no such instance (or service) is registered now (e.g. before it starts)")
	var clear, all bool
	if name == "set-weight" {
		fs.BoolVar(&clear, "clear", false, "remove the weight override")
	} else {
		fs.BoolVar(&all, "all", false, "the whole service: give only <service>")
	}
	pos, err := parseArgs(fs, args, 0, maxArgs, stdout)
	if err != nil {
		return err
	}
	if all {
		minArgs, maxArgs = 1, 1
	}
	switch {
	case len(pos) > maxArgs:
		return usageError{fmt.Errorf("--all takes the service only, got %q", pos)}
	case len(pos) < minArgs:
		return usageError{fmt.Errorf("want %d argument(s), got %d: %q", minArgs, len(pos), pos)}
	}
	if err := f.check(); err != nil {
		return err
	}
	var arg string
	switch {
	case name != "set-weight":
	case clear && len(pos) == 3:
		return usageError{errors.New("give a weight or --clear, not both")}
	case !clear && len(pos) != 3:
		return usageError{errors.New("give a weight or --clear")}
	case !clear:
		arg = pos[2]
	}
	v, err := value(arg)
	if err != nil {
		return err
	}
	service, id := pos[0], ""
	if !all {
		id = pos[1]
	}
	c, cat, err := f.catalog(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	rctx, cancel := f.requestContext(ctx)
	defer cancel()
	if !*force {
		if err := checkRegistered(rctx, cat, service, id); err != nil {
			return err
		}
	}
	if v == "" {
		err = cat.ClearProperty(rctx, service, id, prop)
	} else {
		err = cat.SetProperty(rctx, service, id, prop, v)
	}
	if errors.Is(err, catalog.ErrBadName) || errors.Is(err, catalog.ErrBadProperty) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	var still []catalog.Property
	if name == "undrain" {
		if still, err = stillDrained(rctx, cat, service, id); err != nil {
			return err
		}
	}
	yes, no := honouredBy, notHonouredBy
	if prop == catalog.PropWeight {
		yes, no = weightHonouredBy, weightNotHonouredBy
	}
	if f.json() {
		return writeJSON(stdout, propertyChange{Service: service, ID: id, Property: prop, Value: v, StillDrained: still, HonouredBy: yes, NotHonouredBy: no})
	}
	switch {
	case name == "drain" && all:
		fmt.Fprintf(stdout, "drained service %s as a whole: its instances, present and future, out of rotation; processes keep running\n", service)
	case name == "drain":
		fmt.Fprintf(stdout, "drained %s/%s: out of rotation; its process keeps running\n", service, id)
	case name == "undrain" && len(still) > 0 && all:
		ids := make([]string, len(still))
		for i, p := range still {
			ids[i] = p.ID
		}
		fmt.Fprintf(stdout, "undrained service %s as a whole: back in rotation, but instances drained on their own stay out: %s\n", service, strings.Join(ids, ", "))
	case name == "undrain" && len(still) > 0:
		fmt.Fprintf(stdout, "undrained %s/%s: its own drain removed, but it stays out while service %s is drained as a whole (undrain --all %s)\n", service, id, service, service)
	case name == "undrain" && all:
		fmt.Fprintf(stdout, "undrained service %s as a whole: back in rotation\n", service)
	case name == "undrain":
		fmt.Fprintf(stdout, "undrained %s/%s: back in rotation\n", service, id)
	case v == "":
		fmt.Fprintf(stdout, "cleared the weight override of %s/%s\n", service, id)
	default:
		fmt.Fprintf(stdout, "set the weight of %s/%s to %s\n", service, id, v)
	}
	fmt.Fprintf(stdout, "  honoured by: %s\n  not by: %s\n", strings.Join(yes, "; "), strings.Join(no, "; "))
	if v != "" {
		fmt.Fprintf(stdout, "  %s\n", outlives(name, service, id))
	}
	return nil
}

// outlives says that a drain or a weight set is kept under the instance's
// id (or the service's name) with no lease, and how to remove it: it is
// the operator's, not the registration's.
func outlives(name, service, id string) string {
	undo := "etcdsd undrain " + service + " " + id
	if name == "set-weight" {
		undo = "etcdsd set-weight --clear " + service + " " + id
	}
	if id == "" {
		return "kept under the service's name, it outlives the processes: instances registered later get it too, until etcdsd undrain --all " + service
	}
	return fmt.Sprintf("kept under the instance's id, it outlives the process: whatever registers %s/%s again gets it, until %s", service, id, undo)
}

// stillDrained returns, after an undrain of instance id (or of the whole
// service when id is empty), the drains that keep it out of rotation: the
// service's own, or the instances' own.
func stillDrained(ctx context.Context, cat *catalog.Catalog, service, id string) ([]catalog.Property, error) {
	props, err := cat.Properties(ctx, service)
	if err != nil {
		return nil, err
	}
	var out []catalog.Property
	for _, p := range props {
		if p.Name == catalog.PropDisabled && p.Value == "true" && (id == "") != (p.ID == "") {
			out = append(out, p)
		}
	}
	return out, nil
}

// checkRegistered fails unless service has an instance id (any instance
// when id is empty), to catch typos.
func checkRegistered(ctx context.Context, cat *catalog.Catalog, service, id string) error {
	instances, err := getService(ctx, cat, service)
	if errors.As(err, new(noServiceError)) {
		return fmt.Errorf("%w (use --force to set it anyway)", err)
	}
	if err != nil || id == "" {
		return err
	}
	for _, inst := range instances {
		if inst.ID == id {
			return nil
		}
	}
	return fmt.Errorf("service %q has no instance %q (use --force to set it anyway)", service, id)
}
