package property

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/go-kit/kit/sd"

	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/pipeline"
)

const (
	testPrefix = "/services/app/"
	testProps  = "/etcdsd/properties/services/app/"
)

// overlay is an Overlay whose two input Feeds the test drives by hand, as
// their mirrors would.
type overlay struct {
	*Overlay
	instances, props *pipeline.Feed
	rev              int64
}

func newOverlay(t *testing.T) *overlay {
	o := NewOverlay(testPrefix, testProps, pipeline.ParseValue, itest.Logger(t))
	t.Cleanup(o.Instances().Stop)
	return &overlay{Overlay: o, instances: o.Instances(), props: o.Properties()}
}

func (o *overlay) start(instances, props map[string]string) {
	o.instances.Reset(1, kvs(instances), true)
	o.props.Reset(1, kvs(props), true)
	o.rev = 1
}

func kvs(m map[string]string) []pipeline.KV {
	var out []pipeline.KV
	for k, v := range m {
		out = append(out, pipeline.KV{Key: k, Value: v, ModRev: 1})
	}
	return out
}

// put writes key=value to the props Feed when key is a property, else to
// the instances Feed, as one watch response.
func (o *overlay) put(key, value string) {
	o.rev++
	o.feedOf(key).Apply(o.rev, []pipeline.Change{{Op: pipeline.Put, Key: key, Value: value, Rev: o.rev}})
}

func (o *overlay) del(key string) {
	o.rev++
	o.feedOf(key).Apply(o.rev, []pipeline.Change{{Op: pipeline.Delete, Key: key, Rev: o.rev}})
}

func (o *overlay) feedOf(key string) *pipeline.Feed {
	if _, _, ok := ParseKey(testProps, key); ok {
		return o.props
	}
	return o.instances
}

// out returns the output's content by key.
func (o *overlay) out() map[string]pipeline.Change {
	m := map[string]pipeline.Change{}
	for _, ch := range o.Instances().Contents() {
		m[ch.Key] = ch
	}
	return m
}

func wantInstances(t *testing.T, ev sd.Event, want ...string) {
	t.Helper()
	if ev.Err != nil || !slices.Equal(ev.Instances, want) {
		t.Fatalf("state = %+v, want instances %v without error", ev, want)
	}
}

func TestOverlayLeavesDisabledInstancesOut(t *testing.T) {
	o := newOverlay(t)
	o.start(map[string]string{testPrefix + "a": "10.0.0.1:80", testPrefix + "b": "10.0.0.2:80"},
		map[string]string{testProps + "a/disabled": "true"}) // set before: the first state honours it
	wantInstances(t, o.Instances().State(), "10.0.0.2:80")

	o.del(testProps + "a/disabled")
	wantInstances(t, o.Instances().State(), "10.0.0.1:80", "10.0.0.2:80")
	o.put(testProps+"b/disabled", "true")
	wantInstances(t, o.Instances().State(), "10.0.0.1:80")
	if _, ok := o.out()[testPrefix+"b"]; ok {
		t.Fatal("the drained instance is still in the output Feed")
	}
	o.put(testPrefix+"b", "10.0.0.3:80") // re-registered with a new value: still drained
	wantInstances(t, o.Instances().State(), "10.0.0.1:80")
}

func TestOverlayWeightChangesOnlyTheTypedWeightNeverTheValue(t *testing.T) {
	o := newOverlay(t)
	o.start(map[string]string{
		testPrefix + "plain": "127.0.0.1:18189",
		testPrefix + "json":  `{"address":"127.0.0.1:18190","weight":2}`,
	}, nil)
	events := make(chan sd.Event, 8)
	o.Instances().Register(events)
	defer o.Instances().Deregister(events)
	<-events
	sub := o.Instances().Subscribe()
	defer sub.Close()
	sub.Take()

	o.put(testProps+"plain/weight", "5")
	o.put(testProps+"json/weight", "7")
	b := sub.Take()
	if len(b.Changes) != 2 {
		t.Fatalf("changes = %+v, want one per instance", b.Changes)
	}
	for _, ch := range b.Changes {
		want := map[string]int{testPrefix + "plain": 5, testPrefix + "json": 7}[ch.Key]
		if ch.Op != pipeline.Put || ch.Instance.Weight != want || ch.Value != ch.Prev {
			t.Errorf("change %+v: want a put of the same value with weight %d", ch, want)
		}
	}
	if got := o.out()[testPrefix+"plain"].Value; got != "127.0.0.1:18189" {
		t.Fatalf("plain value became %q", got)
	}
	select {
	case ev := <-events:
		t.Fatalf("a weight change sent go-kit subscribers %+v; their values did not change", ev)
	case <-time.After(50 * time.Millisecond):
	}
	wantInstances(t, o.Instances().State(), "127.0.0.1:18189", `{"address":"127.0.0.1:18190","weight":2}`)

	o.del(testProps + "plain/weight")
	if ch := o.out()[testPrefix+"plain"]; !ch.Instance.IsPlain("127.0.0.1:18189") {
		t.Fatalf("after clearing the override: %+v, want the plain instance", ch.Instance)
	}
}

func TestOverlayPropertyOfEveryInstanceYieldsToTheInstancesOwn(t *testing.T) {
	o := newOverlay(t)
	o.start(map[string]string{testPrefix + "a": "a:1", testPrefix + "b": "b:1", testPrefix + "c": "c:1"}, nil)
	o.put(testProps+"c/disabled", "false")
	o.put(testProps+"_/disabled", "true")
	wantInstances(t, o.Instances().State(), "c:1")
	o.put(testProps+"_/weight", "4")
	o.put(testProps+"c/weight", "9")
	if w := o.out()[testPrefix+"c"].Instance.Weight; w != 9 {
		t.Fatalf("c weight %d, want its own 9", w)
	}
	o.del(testProps + "_/disabled")
	out := o.out()
	if w := out[testPrefix+"a"].Instance.Weight; w != 4 || len(out) != 3 {
		t.Fatalf("output %+v: want all three back, a with the weight 4 of every instance", out)
	}
}

func TestOverlayIgnoresMalformedProperties(t *testing.T) {
	o := newOverlay(t)
	o.start(map[string]string{testPrefix + "a": "a:1"}, nil)
	o.put(testProps+"_/disabled", "true")
	wantInstances(t, o.Instances().State())
	o.put(testProps+"_/disabled", "maybe") // written behind the CLI's back: the drain is gone
	wantInstances(t, o.Instances().State(), "a:1")
	o.put(testProps+"a/weight", "lots")
	if w := o.out()[testPrefix+"a"].Instance.Weight; w != 0 {
		t.Fatalf("weight %d from a malformed override", w)
	}
}

func TestOverlayReportsInstanceErrorsAndOnlyLogsPropertyErrors(t *testing.T) {
	o := newOverlay(t)
	o.start(map[string]string{testPrefix + "a": "a:1"}, map[string]string{testProps + "a/weight": "3"})
	o.props.Fail(errors.New("permission denied"))
	wantInstances(t, o.Instances().State(), "a:1")
	if w := o.out()[testPrefix+"a"].Instance.Weight; w != 3 {
		t.Fatalf("weight %d, want the last known override 3 kept", w)
	}

	down := errors.New("etcd down")
	o.instances.Fail(down)
	if ev := o.Instances().State(); !errors.Is(ev.Err, down) || !slices.Equal(ev.Instances, []string{"a:1"}) {
		t.Fatalf("state = %+v, want the error with the last instances", ev)
	}
	o.rev++
	o.instances.Reset(o.rev, []pipeline.KV{{Key: testPrefix + "a", Value: "a:1", ModRev: 1}, {Key: testPrefix + "b", Value: "b:1", ModRev: o.rev}}, false)
	wantInstances(t, o.Instances().State(), "a:1", "b:1")
}

func TestOverlayMatchesInstancesByKeyNotByValue(t *testing.T) {
	o := newOverlay(t)
	// A JSON value's own id plays no part: the key names the instance.
	o.start(map[string]string{testPrefix + "k1": `{"id":"other","address":"a:1"}`}, nil)
	o.put(testProps+"other/disabled", "true")
	wantInstances(t, o.Instances().State(), `{"id":"other","address":"a:1"}`)
	o.put(testProps+"k1/disabled", "true")
	wantInstances(t, o.Instances().State())
	if got := o.Instances().Len(); got != 0 {
		t.Fatalf("output holds %d instances", got)
	}
}

// After an outage the properties' mirror may recover before the
// instances': subscribers keep the outage's error until the instances are
// read again, and then get the properties changed meanwhile with them.
func TestOverlayAppliesPropertiesReadDuringAnOutageAndKeepsTheError(t *testing.T) {
	o := newOverlay(t)
	o.start(map[string]string{testPrefix + "a": "a:1", testPrefix + "b": "b:1"}, nil)
	down := errors.New("etcd down")
	o.instances.Fail(down)
	o.props.Fail(down)

	// The properties' mirror recovers first: the drain takes effect at
	// once, and subscribers still hear that the instances are not current.
	o.rev++
	o.props.Reset(o.rev, []pipeline.KV{{Key: testProps + "a/disabled", Value: "true", ModRev: o.rev}}, false)
	if ev := o.Instances().State(); !errors.Is(ev.Err, down) || !slices.Equal(ev.Instances, []string{"b:1"}) {
		t.Fatalf("state %+v after the properties recovered alone: want the outage, and a drained", ev)
	}
	o.rev++
	o.instances.Reset(o.rev, []pipeline.KV{{Key: testPrefix + "a", Value: "a:1", ModRev: 1}, {Key: testPrefix + "b", Value: "b:1", ModRev: 1}}, false)
	if ev := o.Instances().State(); ev.Err != nil || !slices.Equal(ev.Instances, []string{"b:1"}) {
		t.Fatalf("state %+v after the instances recovered: want b alone, no error", ev)
	}
}

// An Instancer may read its instances before its properties (or, started
// before etcd answers, get them first): nothing is published until the
// properties are read, so that a drained instance never shows.
func TestOverlayHoldsTheInstancesUntilThePropertiesAreRead(t *testing.T) {
	o := newOverlay(t)
	o.instances.Reset(1, kvs(map[string]string{testPrefix + "a": "a:1", testPrefix + "b": "b:1"}), true)
	o.rev = 1
	o.put(testPrefix+"c", "c:1")
	if n := o.Instances().Len(); n != 0 {
		t.Fatalf("%d instances published before the properties were read", n)
	}
	o.props.Fail(errors.New("etcd down")) // a failed read is no read
	if n := o.Instances().Len(); n != 0 {
		t.Fatalf("%d instances published after the properties failed to be read", n)
	}
	o.rev++
	o.props.Reset(o.rev, kvs(map[string]string{testProps + "b/disabled": "true"}), true)
	wantInstances(t, o.Instances().State(), "a:1", "c:1")
}
