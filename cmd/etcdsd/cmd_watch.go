package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/etcdsd/etcdsd/catalog"
)

// watchedEvent is one line of watch -o json about a change.
type watchedEvent struct {
	Event    string            `json:"event"` // "change"
	Revision int64             `json:"revision"`
	Type     string            `json:"type"`
	Kind     string            `json:"kind"`
	Service  string            `json:"service"`
	ID       string            `json:"id,omitempty"`
	Instance *catalog.Instance `json:"instance,omitempty"`
	Property *catalog.Property `json:"property,omitempty"`
	Resync   bool              `json:"resync,omitempty"`
}

// watchStatus is one line of watch -o json about the watch itself: an
// outage (etcd cannot be read after Revision; Error says why) or the
// recovery from one (the watch resumed from Revision).
type watchStatus struct {
	Event    string `json:"event"` // "outage" or "recovered"
	Revision int64  `json:"revision"`
	Error    string `json:"error,omitempty"`
}

// runWatch prints the typed events of the services named by a name or
// prefix until interrupted.
func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("watch",
		"Print the current instances and properties, then every change as it happens, with its\netcd revision, until interrupted (Ctrl-C). -o json prints one JSON object per line.\n"+
			"When etcd cannot be read for longer than --timeout, one line says so and one more when\n"+
			"the watch resumes, with the revision it resumed from (on stderr; with -o json, objects\n"+
			"{\"event\":\"outage\",...} and {\"event\":\"recovered\",\"revision\":N} among the changes).\n"+
			"A service with no instance yet is watched for (a note on stderr says so).")
	f := addCommonFlags(fs, true)
	pos, err := parseArgs(fs, args, 0, 1, stdout)
	if err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	opts := []catalog.WatchOption{catalog.WatchRecoveries()}
	var service string
	if len(pos) == 1 {
		if prefix, isPrefix := strings.CutSuffix(pos[0], "*"); isPrefix {
			opts = append(opts, catalog.WatchServicePrefix(prefix))
		} else {
			service = pos[0]
			opts = append(opts, catalog.WatchService(service))
		}
	}
	c, cat, err := f.catalog(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if service != "" {
		// As etcdctl watches a key that does not exist yet, watch waits for
		// a service that may appear later, but says so, to catch typos.
		rctx, cancel := f.requestContext(ctx)
		_, err := getService(rctx, cat, service)
		cancel()
		if errors.As(err, new(noServiceError)) {
			fmt.Fprintf(stderr, "etcdsd watch: %v yet; watching for it\n", err)
		} else if err != nil {
			return err
		}
	}
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
	var outages outageTracker
	for ev := range events {
		if ev.Err != nil || ev.Recovered {
			st := outages.note(ev)
			switch {
			case st == nil:
			case f.json():
				if err := enc.Encode(st); err != nil {
					return err
				}
			case st.Event == "outage":
				fmt.Fprintf(stderr, "etcdsd watch: cannot read etcd after revision %d, retrying: %s\n", st.Revision, st.Error)
			default:
				fmt.Fprintf(stderr, "etcdsd watch: recovered, resumed from revision %d\n", st.Revision)
			}
			continue
		}
		if f.json() {
			if err := enc.Encode(watchedEvent{Event: "change", Revision: ev.Revision, Type: ev.Type.String(), Kind: ev.Kind.String(),
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

// outageTracker merges the outages of the watch of instances and that of
// properties, which fail and recover on their own, into one outage line
// when the first fails and one recovery line when the last is back, with
// the lowest revision they resumed from: no change after it is missed.
type outageTracker struct {
	down    map[catalog.Kind]bool
	resumed int64
}

// note takes an event with Err or Recovered and returns the line to print,
// if any.
func (o *outageTracker) note(ev catalog.Event) *watchStatus {
	if o.down == nil {
		o.down = map[catalog.Kind]bool{}
	}
	if ev.Err != nil {
		first := len(o.down) == 0
		o.down[ev.Kind] = true
		if first {
			return &watchStatus{Event: "outage", Revision: ev.Revision, Error: oneLine(ev.Err)}
		}
		return nil
	}
	if !o.down[ev.Kind] {
		return nil
	}
	delete(o.down, ev.Kind)
	if o.resumed == 0 || ev.Revision < o.resumed {
		o.resumed = ev.Revision
	}
	if len(o.down) > 0 {
		return nil
	}
	st := &watchStatus{Event: "recovered", Revision: o.resumed}
	o.resumed = 0
	return st
}
