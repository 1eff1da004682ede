package main

import (
	"errors"
	"testing"

	"github.com/etcdsd/etcdsd/catalog"
)

// The watches of instances and of properties fail and recover on their
// own: watch prints one outage line when the first fails and one recovery
// line, with the lowest revision resumed from, when the last is back.
func TestWatchMergesTheOutagesOfBothKindsIntoOneLineEach(t *testing.T) {
	down := errors.New("etcd unreachable")
	var o outageTracker
	for i, step := range []struct {
		ev   catalog.Event
		want *watchStatus
	}{
		{catalog.Event{Kind: catalog.KindProperty, Recovered: true, Revision: 3}, nil}, // no outage to recover from
		{catalog.Event{Kind: catalog.KindInstance, Err: down, Revision: 7}, &watchStatus{Event: "outage", Revision: 7, Error: "etcd unreachable"}},
		{catalog.Event{Kind: catalog.KindProperty, Err: down, Revision: 6}, nil},
		{catalog.Event{Kind: catalog.KindProperty, Recovered: true, Revision: 9}, nil},
		{catalog.Event{Kind: catalog.KindInstance, Recovered: true, Revision: 10}, &watchStatus{Event: "recovered", Revision: 9}},
		{catalog.Event{Kind: catalog.KindInstance, Recovered: true, Revision: 10}, nil},
		{catalog.Event{Kind: catalog.KindProperty, Err: down, Revision: 12}, &watchStatus{Event: "outage", Revision: 12, Error: "etcd unreachable"}},
		{catalog.Event{Kind: catalog.KindProperty, Recovered: true, Revision: 14}, &watchStatus{Event: "recovered", Revision: 14}},
	} {
		got := o.note(step.ev)
		if (got == nil) != (step.want == nil) || got != nil && *got != *step.want {
			t.Fatalf("step %d: %+v gives %+v, want %+v", i, step.ev, got, step.want)
		}
	}
}
