package main

import (
	"context"
	"io"
	"strconv"
)

// runServices lists every service with its number of instances.
func runServices(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("services", "List every service with its number of instances (one keys-only read).")
	f := addCommonFlags(fs, true)
	if _, err := parseArgs(fs, args, 0, 0, stdout); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	c, cat, err := f.catalog(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	rctx, cancel := f.requestContext(ctx)
	defer cancel()
	services, err := cat.ListServices(rctx)
	if err != nil {
		return err
	}
	if f.json() {
		return writeJSON(stdout, services)
	}
	rows := make([][]string, len(services))
	for i, s := range services {
		rows[i] = []string{s.Name, strconv.Itoa(s.Instances)}
	}
	return writeTable(stdout, []string{"SERVICE", "INSTANCES"}, rows)
}
