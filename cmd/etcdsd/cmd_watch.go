package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/etcdsd/etcdsd/catalog"
)

// watchedEvent is one line of watch -o json.
type watchedEvent struct {
	Revision int64             `json:"revision"`
	Type     string            `json:"type"`
	Kind     string            `json:"kind"`
	Service  string            `json:"service"`
	ID       string            `json:"id,omitempty"`
	Instance *catalog.Instance `json:"instance,omitempty"`
	Property *catalog.Property `json:"property,omitempty"`
	Resync   bool              `json:"resync,omitempty"`
}

// runWatch prints the typed events of the services named by a name or
// prefix until interrupted.
func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("watch",
		"Print the current instances and properties, then every change as it happens, with its\netcd revision, until interrupted (Ctrl-C). -o json prints one JSON object per line.")
	f := addCommonFlags(fs, true)
	pos, err := parseArgs(fs, args, 0, 1, stdout)
	if err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	var opts []catalog.WatchOption
	if len(pos) == 1 {
		if prefix, isPrefix := strings.CutSuffix(pos[0], "*"); isPrefix {
			opts = append(opts, catalog.WatchServicePrefix(prefix))
		} else {
			opts = append(opts, catalog.WatchService(pos[0]))
		}
	}
	c, cat, err := f.catalog(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := cat.Watch(wctx, opts...)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	const format = "%-9v %-7s %-9s %-16s %-18s %s\n"
	if !f.json() {
		fmt.Fprintf(stdout, format, "REVISION", "TYPE", "KIND", "SERVICE", "ID", "VALUE")
	}
	for ev := range events {
		if ev.Err != nil {
			fmt.Fprintf(stderr, "etcdsd watch: %s watch failing, retrying: %v\n", ev.Kind, ev.Err)
			continue
		}
		if f.json() {
			if err := enc.Encode(watchedEvent{Revision: ev.Revision, Type: ev.Type.String(), Kind: ev.Kind.String(),
				Service: ev.Service, ID: ev.ID, Instance: ev.Instance, Property: ev.Property, Resync: ev.Resync}); err != nil {
				return err
			}
			continue
		}
		id, value := ev.ID, ""
		switch {
		case ev.Instance != nil:
			value, _ = ev.Instance.Encode() // it parsed, so it encodes
		case ev.Property != nil:
			value = ev.Property.Name + "=" + ev.Property.Value
			if id == "" {
				id = "(service)"
			}
		}
		if _, err := fmt.Fprintf(stdout, format, ev.Revision, ev.Type, ev.Kind, ev.Service, id, value); err != nil {
			return err
		}
	}
	return nil
}
