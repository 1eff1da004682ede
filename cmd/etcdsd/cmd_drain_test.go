package main

import (
	"slices"
	"strings"
	"testing"
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
