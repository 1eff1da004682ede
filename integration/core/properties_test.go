package core

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsd/etcdsd/etcdtest"
	"github.com/etcdsd/etcdsd/etcdv3"
	"github.com/etcdsd/etcdsd/internal/itest"
	"github.com/etcdsd/etcdsd/internal/itest/itestclient"
	"github.com/etcdsd/etcdsd/internal/pipeline"
)

// props is where the operator's properties of the instances under prefix
// live with the default properties root.
func props(prefix string) string { return "/etcdsd/properties" + prefix }

func put(t testing.TB, cli *clientv3.Client, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, key, value); err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
}

func del(t testing.TB, cli *clientv3.Client, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Delete(ctx, key); err != nil {
		t.Fatalf("delete %q: %v", key, err)
	}
}

// feedInstances returns the Feed's content by key.
func feedInstances(in *etcdv3.Instancer) map[string]pipeline.Change {
	m := map[string]pipeline.Change{}
	for _, ch := range in.Feed().Contents() {
		m[ch.Key] = ch
	}
	return m
}

func TestInstancerLeavesDrainedInstancesOutOfEventsAndFeed(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints())
	cli := c.EtcdClient()
	const prefix = "/services/drained/"
	put(t, cli, props(prefix)+"a/disabled", "true") // before the Instancer: its first state honours it
	put(t, cli, prefix+"a", "127.0.0.1:9001")
	put(t, cli, prefix+"b", `{"address":"127.0.0.1:9002"}`)
	in := newInstancer(t, c, prefix)
	rec := itest.Subscribe(t, in)
	rec.WaitInstances(t, time.Second, `{"address":"127.0.0.1:9002"}`)
	if _, ok := feedInstances(in)[prefix+"a"]; ok {
		t.Fatal("the drained instance is in the Feed")
	}

	del(t, cli, props(prefix)+"a/disabled")
	rec.WaitInstances(t, time.Second, "127.0.0.1:9001", `{"address":"127.0.0.1:9002"}`)

	// Drain every instance but b, which an operator keeps in.
	put(t, cli, props(prefix)+"b/disabled", "false")
	put(t, cli, props(prefix)+"_/disabled", "true")
	rec.WaitInstances(t, time.Second, `{"address":"127.0.0.1:9002"}`)
	del(t, cli, props(prefix)+"_/disabled")
	rec.WaitInstances(t, time.Second, "127.0.0.1:9001", `{"address":"127.0.0.1:9002"}`)
}

func TestInstancerWeightOverrideChangesOnlyTheTypedWeight(t *testing.T) {
	srv := etcdtest.NewServer(t)
	c := itestclient.New(t, srv.Endpoints())
	cli := c.EtcdClient()
	const prefix = "/services/weighted/"
	put(t, cli, prefix+"a", "127.0.0.1:18189") // a plain value, as go-kit registers
	in := newInstancer(t, c, prefix)
	rec := itest.Subscribe(t, in)
	rec.WaitInstances(t, time.Second, "127.0.0.1:18189")
	_, seen := rec.Since(0)

	put(t, cli, props(prefix)+"a/weight", "5")
	itest.Eventually(t, time.Second, "weight 5 in the Feed", func() bool { return feedInstances(in)[prefix+"a"].Instance.Weight == 5 })
	if ch := feedInstances(in)[prefix+"a"]; ch.Value != "127.0.0.1:18189" || ch.Instance.Address != "127.0.0.1:18189" {
		t.Fatalf("Feed change %+v: the value must stay as registered", ch)
	}
	// A later change marks the point by which any event for the weight
	// would have come: go-kit subscribers got only the later one.
	put(t, cli, prefix+"b", "127.0.0.1:18190")
	rec.WaitInstances(t, time.Second, "127.0.0.1:18189", "127.0.0.1:18190")
	if evs, _ := rec.Since(seen); len(evs) != 1 {
		t.Fatalf("go-kit subscribers got %d events for a weight override and one new instance, want 1: %+v", len(evs), evs)
	}
	if got := in.State().Instances; !slices.Equal(got, []string{"127.0.0.1:18189", "127.0.0.1:18190"}) {
		t.Fatalf("sd.Event instances %v", got)
	}
}

// lines is a go-kit logger that keeps every line, and also writes it to
// the test log.
type lines struct {
	t   testing.TB
	mu  sync.Mutex
	all []string
}

func (l *lines) Log(kv ...any) error {
	l.mu.Lock()
	l.all = append(l.all, fmt.Sprint(kv...))
	l.mu.Unlock()
	return itest.Logger(l.t).Log(kv...)
}

func (l *lines) contain(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.all, func(line string) bool { return strings.Contains(line, s) })
}

// count returns how many lines contain every one of subs.
func (l *lines) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.all {
		if !slices.ContainsFunc(subs, func(s string) bool { return !strings.Contains(line, s) }) {
			n++
		}
	}
	return n
}

// A service's role may be limited to its own prefix (etcd auth): its
// Instancer then serves the instances as registered, and says why.
func TestInstancerOfARoleThatCannotReadPropertiesServesInstancesAsRegistered(t *testing.T) {
	srv := etcdtest.NewServer(t)
	const prefix = "/services/limited/"
	root := srv.EnableAuth("svc", "s3cret", prefix)
	put(t, root, props(prefix)+"a/disabled", "true")
	put(t, root, prefix+"a", "127.0.0.1:9001")
	c := itestclient.New(t, srv.Endpoints(), func(o *etcdv3.ClientOptions) { o.Username, o.Password = "svc", "s3cret" })
	logs := &lines{t: t}
	in, err := etcdv3.NewInstancer(c, prefix, logs)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	if ev := in.State(); ev.Err != nil || !slices.Equal(ev.Instances, []string{"127.0.0.1:9001"}) {
		t.Fatalf("state %+v, want the instance as registered", ev)
	}
	if !logs.contain("cannot read the operator's properties") {
		t.Fatalf("no warning about the properties in %q", logs.all)
	}
}

// The same for an Instancer started while etcd is down (NewInstancer is
// lazy; a client with credentials has logged in before): once etcd answers
// and refuses the properties, the Instancer serves the instances as
// registered, and says why in an error naming the properties' prefix,
// rather than hide every instance, forever, with no error.
func TestInstancerStartedBeforeEtcdOfARoleThatCannotReadPropertiesServesInstancesAsRegistered(t *testing.T) {
	srv := etcdtest.NewServer(t)
	if srv.External() {
		t.Skip("stops etcd: needs the embedded server")
	}
	const prefix = "/services/limited-lazy/"
	root := srv.EnableAuth("svc", "s3cret", prefix)
	put(t, root, props(prefix)+"a/disabled", "true")
	put(t, root, prefix+"a", "127.0.0.1:9001")
	c := itestclient.New(t, srv.Endpoints(), func(o *etcdv3.ClientOptions) {
		o.Username, o.Password = "svc", "s3cret"
		o.DialTimeout, o.RequestTimeout = 500*time.Millisecond, 500*time.Millisecond
	})
	srv.Stop() // etcd restarts as the service starts its Instancer
	logs := &lines{t: t}
	in, err := etcdv3.NewInstancer(c, prefix, logs)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	if st := in.State(); st.Err == nil {
		t.Fatalf("state before etcd = %+v, want the error", st)
	}

	srv.Start()
	itest.Eventually(t, 10*time.Second, "the instance as registered", func() bool {
		st := in.State()
		return st.Err == nil && slices.Equal(st.Instances, []string{"127.0.0.1:9001"})
	})
	if logs.count("permission denied") != 1 || logs.count("levelerror", props(prefix), "permission denied") != 1 {
		t.Fatalf("want one error naming %q and the refusal in %q", props(prefix), logs.all)
	}
}

func TestInstancerReadsPropertiesUnderTheClientsRootOrNoneWithDash(t *testing.T) {
	srv := etcdtest.NewServer(t)
	const prefix = "/services/rooted/"
	withRoot := func(root string) *etcdv3.EtcdClient {
		return itestclient.New(t, srv.Endpoints(), func(o *etcdv3.ClientOptions) { o.PropertiesRoot = root })
	}
	def, ops, off := withRoot(""), withRoot("/ops/"), withRoot("-")
	put(t, def.EtcdClient(), prefix+"a", "127.0.0.1:9001")
	put(t, def.EtcdClient(), prefix+"b", "127.0.0.1:9002")
	put(t, def.EtcdClient(), props(prefix)+"a/disabled", "true")
	put(t, def.EtcdClient(), "/ops"+prefix+"b/disabled", "true")
	for _, tc := range []struct {
		name string
		c    *etcdv3.EtcdClient
		want []string
	}{
		{"default root", def, []string{"127.0.0.1:9002"}},
		{"root /ops/", ops, []string{"127.0.0.1:9001"}},
		{"properties off", off, []string{"127.0.0.1:9001", "127.0.0.1:9002"}},
	} {
		if got := newInstancer(t, tc.c, prefix).State(); got.Err != nil || !slices.Equal(got.Instances, tc.want) {
			t.Errorf("%s: %+v, want %v", tc.name, got, tc.want)
		}
	}
}
