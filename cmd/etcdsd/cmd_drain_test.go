package main

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/etcdsd/etcdsd/etcdv3"
)

// The CLI tells operators which clients apply a drain or a weight: the
// lists must name etcdsd's Instancers and warn about go-kit's own package,
// and never claim that go-kit's lb weights.
func TestPropertyMessagesNameWhoHonoursTheChange(t *testing.T) {
	joined := func(l []string) string { return strings.Join(l, "; ") }
	for _, want := range []string{"etcdv3.NewInstancer", "catalog", "sd.NewEndpointer", "endpointer", "grpcsd"} {
		if !strings.Contains(joined(honouredBy), want) {
			t.Errorf("drain is honoured by %q, which lacks %q", honouredBy, want)
		}
	}
	if !strings.Contains(joined(weightHonouredBy), "Weighted") || strings.Contains(joined(weightHonouredBy), "lb") {
		t.Errorf("weight honoured by %q", weightHonouredBy)
	}
	for _, l := range [][]string{notHonouredBy, weightNotHonouredBy} {
		if !slices.Contains(l, "go-kit's own sd/etcdv3") || !strings.Contains(joined(l), "fake") {
			t.Errorf("not honoured by %q: want go-kit's own sd/etcdv3 and fakes named", l)
		}
	}
}

// A weight that is no weight is bad usage, said as the value and what is
// wrong, before etcd is asked: a negative one too, which flag would take
// for an undefined flag.
func TestSetWeightRefusesABadWeightNamingIt(t *testing.T) {
	dead := deadEndpoint(t)
	for _, weight := range []string{"-3", "0", "1.5", "x", "1048577"} {
		code, out, errOut, took := runCLI(t, "set-weight", "--endpoints", dead, "--timeout", "3s", "greeter", "id", weight)
		if code != 2 || out != "" || !strings.Contains(errOut, "weight \""+weight+"\"") || strings.Contains(errOut, "flag provided") {
			t.Errorf("set-weight greeter id %s: exit %d, stdout %q, stderr %q; want exit 2 naming the weight", weight, code, out, errOut)
		}
		if took > time.Second {
			t.Errorf("set-weight greeter id %s took %v: it asked etcd about a weight it could refuse", weight, took)
		}
	}
}

// A negative number is an argument wherever a command takes one, not an
// undefined flag: drain names an instance id "-3" it cannot find, rather
// than a flag.
func TestNegativeNumbersAreArgumentsNotFlags(t *testing.T) {
	dead := deadEndpoint(t)
	code, _, errOut, _ := runCLI(t, "drain", "--endpoints", dead, "--timeout", "300ms", "greeter", "-3")
	if code == 0 || strings.Contains(errOut, "flag provided") {
		t.Errorf("drain greeter -3: exit %d, stderr %q; want -3 taken as the id", code, errOut)
	}
}

// A drain or a weight is kept under the instance's id, without a lease:
// the output says it outlives the process and how to remove it, and a new
// process registering the same key does get it.
func TestDrainAndSetWeightSayTheyOutliveTheProcess(t *testing.T) {
	e, err := startEmbeddedEtcd()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ep := e.Endpoint()
	c, err := etcdv3.NewEtcdClient(context.Background(), []string{ep}, etcdv3.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	register := func() *etcdv3.Registrar {
		r := etcdv3.NewRegistrar(c, etcdv3.Service{Key: "/services/greeter/g-1", Value: "10.0.0.1:8080"}, log.NewNopLogger())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.RegisterContext(ctx); err != nil {
			t.Fatal(err)
		}
		return r
	}
	first := register()
	say := func(want string, args ...string) {
		t.Helper()
		code, out, errOut, _ := runCLI(t, append(args, "--endpoints", ep)...)
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("etcdsd %s: exit %d, stdout %q, stderr %q; want it to say %q", args, code, out, errOut, want)
		}
	}
	say("it outlives the process: whatever registers greeter/g-1 again gets it, until etcdsd set-weight --clear greeter g-1", "set-weight", "greeter", "g-1", "5")
	// A new process on the same key: the weight set on the old one is its.
	first.Deregister()
	defer register().Deregister()
	say("5 (set)", "list", "greeter")
	say("it outlives the process: whatever registers greeter/g-1 again gets it, until etcdsd undrain greeter g-1", "drain", "greeter", "g-1")
	say("it outlives the processes: instances registered later get it too, until etcdsd undrain --all greeter", "drain", "--all", "greeter")
}
