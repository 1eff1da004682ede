package grpcsd

import (
	"errors"
	"testing"

	"github.com/go-kit/kit/sd"

	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// feedInstancer offers a pipeline Feed, as etcdv3.Instancer and
// catalog.Instancer do: the resolver then applies keyed changes.
type feedInstancer struct {
	feed *pipeline.Feed
	rev  int64
}

func newFeedInstancer(kvs ...pipeline.KV) *feedInstancer {
	f := &feedInstancer{feed: pipeline.NewFeed(), rev: 1}
	f.feed.Reset(1, kvs, true)
	return f
}

func (f *feedInstancer) Feed() *pipeline.Feed          { return f.feed }
func (f *feedInstancer) Register(ch chan<- sd.Event)   { f.feed.Register(ch) }
func (f *feedInstancer) Deregister(ch chan<- sd.Event) { f.feed.Deregister(ch) }
func (f *feedInstancer) Stop()                         { f.feed.Stop() }

func (f *feedInstancer) apply(changes ...pipeline.Change) {
	f.rev++
	for i := range changes {
		changes[i].Rev = f.rev
	}
	f.feed.Apply(f.rev, changes)
}

func addrsOf(s []string) map[string]bool {
	m := map[string]bool{}
	for _, a := range s {
		m[a] = true
	}
	return m
}

func stateAddrs(t *testing.T, cc *fakeCC) []string {
	t.Helper()
	s := cc.nextState(t)
	var out []string
	for _, ep := range s.Endpoints {
		out = append(out, ep.Addresses[0].Addr)
	}
	return out
}

func TestResolverOnAFeedAppliesChangesByKey(t *testing.T) {
	in := newFeedInstancer(
		pipeline.KV{Key: "/services/app/1", Value: `{"address":"10.0.0.1:9000","version":"v1"}`},
		pipeline.KV{Key: "/services/app/2", Value: "10.0.0.2:9000"},
		pipeline.KV{Key: "/services/app/3", Value: "http://10.0.0.1:9000"}, // same address as 1
	)
	cc, r := build(t, in, "etcd:///services/app/")
	defer r.Close()
	s := cc.nextState(t)
	if len(s.Endpoints) != 2 || s.Endpoints[0].Addresses[0].Addr != "10.0.0.1:9000" || s.Endpoints[1].Addresses[0].Addr != "10.0.0.2:9000" {
		t.Fatalf("endpoints = %+v, want 10.0.0.1:9000 (key 1, v1) and 10.0.0.2:9000", s.Endpoints)
	}
	if inst, _ := InstanceFromEndpoint(s.Endpoints[0]); inst.Version != "v1" {
		t.Errorf("the duplicate kept is %+v, want the first key's", inst)
	}
	in.apply(
		pipeline.Change{Op: pipeline.Delete, Key: "/services/app/2"},
		pipeline.Change{Op: pipeline.Put, Key: "/services/app/4", Value: "10.0.0.4:9000"},
	)
	if got := addrsOf(stateAddrs(t, cc)); len(got) != 2 || !got["10.0.0.1:9000"] || !got["10.0.0.4:9000"] {
		t.Fatalf("after a delete and a put: %v", got)
	}
	outage := errors.New("etcd unreachable")
	in.feed.Fail(outage)
	if err := cc.nextErr(t); !errors.Is(err, outage) {
		t.Fatalf("reported %v, want the outage", err)
	}
	in.feed.Reset(9, []pipeline.KV{{Key: "/services/app/1", Value: "10.0.0.1:9000"}}, false)
	if got := stateAddrs(t, cc); len(got) != 1 || got[0] != "10.0.0.1:9000" {
		t.Fatalf("after recovery: %v, want the true state", got)
	}
}
