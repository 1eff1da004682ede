package pipeline

import (
	"slices"
	"testing"

	"github.com/etcdsd/etcdsd/instance"
)

// FuzzFeedValue feeds any value to a Feed next to a good one: a value is
// published (to go-kit subscribers and to Subscriptions alike) if and only
// if instance.Parse accepts it, a malformed one is skipped, and the good
// instance is kept either way.
func FuzzFeedValue(f *testing.F) {
	for _, v := range []string{"10.0.0.2:80", "", "  ", "{", `{"address":"10.0.0.2:80","weight":3}`, `{"address":""}`, `{"weight":-1,"address":"x"}`, "{\"address\":\"\xff\"}", "http://[::1]:80", "a b"} {
		f.Add(v)
	}
	const good = "10.0.0.1:80"
	f.Fuzz(func(t *testing.T, v string) {
		feed := NewFeed()
		defer feed.Stop()
		sub := feed.Subscribe()
		defer sub.Close()
		sub.Take()
		feed.Apply(2, []Change{
			{Op: Put, Key: "/svc/good", Value: good, Rev: 2},
			{Op: Put, Key: "/svc/fuzz", Value: v, Rev: 2},
		})
		st := feed.State()
		_, err := instance.Parse(v)
		accepted := err == nil
		if st.Err != nil || !slices.Contains(st.Instances, good) {
			t.Fatalf("value %q: the good instance was lost: %+v", v, st)
		}
		if slices.Contains(st.Instances, v) != accepted {
			t.Fatalf("value %q: published %v, accepted %v (instances %q)", v, !accepted, accepted, st.Instances)
		}
		if !slices.IsSorted(st.Instances) || len(slices.Compact(slices.Clone(st.Instances))) != len(st.Instances) {
			t.Fatalf("instances not sorted and distinct: %q", st.Instances)
		}
		var keys []string
		for _, ch := range sub.Take().Changes {
			keys = append(keys, ch.Key)
		}
		if slices.Contains(keys, "/svc/fuzz") != accepted {
			t.Fatalf("value %q: subscription saw it %v, accepted %v", v, !accepted, accepted)
		}
		// Deleting the malformed key leaves the good one alone.
		feed.Apply(3, []Change{{Op: Delete, Key: "/svc/fuzz", Rev: 3}})
		if st := feed.State(); !slices.Equal(st.Instances, []string{good}) {
			t.Fatalf("after deleting %q: instances %q, want only %q", v, st.Instances, good)
		}
	})
}
