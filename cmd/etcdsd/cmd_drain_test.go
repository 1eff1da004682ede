package main

import (
	"slices"
	"strings"
	"testing"
	"time"
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
