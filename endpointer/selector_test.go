package endpointer

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// fleetValues is a mixed fleet: two v1, two v2 in two zones, one plain.
var fleetValues = []string{
	jsonValue("v1-a", "v1a:1", "v1", 0, "zone", "a"),
	jsonValue("v1-b", "v1b:1", "v1", 0, "zone", "b"),
	jsonValue("v2-a", "v2a:1", "v2", 0, "zone", "a", "tier", "gold"),
	jsonValue("v2-b", "v2b:1", "v2", 0, "zone", "b", "tier", "gold"),
	"plain:1",
}

func TestRoutingBySelector(t *testing.T) {
	bg := context.Background()
	cases := []struct {
		name string
		ctx  context.Context
		want []string
	}{
		{"no selector: all", bg, []string{"v1a:1", "v1b:1", "v2a:1", "v2b:1", "plain:1"}},
		{"empty version: all", WithVersion(bg, ""), []string{"v1a:1", "v1b:1", "v2a:1", "v2b:1", "plain:1"}},
		{"v2", WithVersion(bg, "v2"), []string{"v2a:1", "v2b:1"}},
		{"v1", WithVersion(bg, "v1"), []string{"v1a:1", "v1b:1"}},
		{"zone a", WithMetadata(bg, "zone", "a"), []string{"v1a:1", "v2a:1"}},
		{"v2 in zone b", WithMetadata(WithVersion(bg, "v2"), "zone", "b"), []string{"v2b:1"}},
		{"zone a, gold (compound)", WithMetadata(WithMetadata(bg, "zone", "a"), "tier", "gold"), []string{"v2a:1"}},
		{"key asked twice keeps the last value", WithMetadata(WithMetadata(bg, "zone", "a"), "zone", "b"), []string{"v1b:1", "v2b:1"}},
		{"version replaced", WithVersion(WithVersion(bg, "v1"), "v2"), []string{"v2a:1", "v2b:1"}},
		{"version cleared", WithVersion(WithVersion(bg, "v1"), ""), []string{"v1a:1", "v1b:1", "v2a:1", "v2b:1", "plain:1"}},
	}
	for _, strat := range []Strategy{RoundRobin, Random, LeastLoaded, Weighted} {
		e := newEndpointer(t, source(t, fleetValues...), newFleet(), WithStrategy(strat), WithSeed(1))
		for _, c := range cases {
			t.Run(strat.String()+"/"+c.name, func(t *testing.T) {
				got := map[string]int{}
				for range 40 * len(c.want) {
					got[call(t, e, c.ctx)]++
				}
				if len(got) != len(c.want) {
					t.Fatalf("served by %v, want exactly %v", got, c.want)
				}
				for _, w := range c.want {
					if got[w] == 0 {
						t.Fatalf("served by %v, want exactly %v", got, c.want)
					}
				}
			})
		}
	}
}

func TestNoMatchNamesWantedAndAvailableVersions(t *testing.T) {
	e := newEndpointer(t, source(t, fleetValues...), newFleet())
	_, err := e.Endpoint()(WithMetadata(WithVersion(context.Background(), "v3"), "zone", "a"), nil)
	if !errors.Is(err, ErrNoMatch) {
		t.Fatalf("err = %v, want ErrNoMatch", err)
	}
	var nm *NoMatchError
	if !errors.As(err, &nm) || nm.Version != "v3" || len(nm.Available) != 3 {
		t.Fatalf("err = %#v, want a NoMatchError for v3 listing 3 versions", err)
	}
	const want = `endpointer: no instance matches version "v3" zone="a" (versions available: (unversioned), "v1", "v2")`
	if err.Error() != want {
		t.Fatalf("error\n%s\nwant\n%s", err, want)
	}
}

func TestPlainAddressNeverServesAVersionedRequest(t *testing.T) {
	e := newEndpointer(t, source(t, "plain:1"), newFleet())
	if got := call(t, e, context.Background()); got != "plain:1" {
		t.Fatalf("got %q", got)
	}
	_, err := e.Pick(WithVersion(context.Background(), "v1"))
	if !errors.Is(err, ErrNoMatch) || !strings.Contains(err.Error(), "(unversioned)") {
		t.Fatalf("err = %v, want ErrNoMatch listing (unversioned)", err)
	}
}

func TestEmptyMetadataKeyIsABadSelector(t *testing.T) {
	e := newEndpointer(t, source(t, fleetValues...), newFleet())
	_, err := e.Endpoint()(WithVersion(WithMetadata(context.Background(), "", "x"), "v1"), nil)
	if !errors.Is(err, ErrBadSelector) || !strings.Contains(err.Error(), `"x"`) {
		t.Fatalf("err = %v, want ErrBadSelector naming the value", err)
	}
}

func TestSelectorsDoNotShareState(t *testing.T) {
	base := WithMetadata(context.Background(), "zone", "a")
	one := WithMetadata(base, "tier", "gold")
	two := WithMetadata(base, "tier", "silver")
	if fromContext(one).key == fromContext(two).key || len(fromContext(base).metadata) != 1 {
		t.Fatal("deriving a selector changed its parent or sibling")
	}
}

func TestGroupKeyIsUnambiguous(t *testing.T) {
	a := groupKey("v1", [][2]string{{"a", "bm1:c"}})
	b := groupKey("v1", [][2]string{{"a", "b"}, {"c", ""}})
	if a == b {
		t.Fatalf("two selectors share key %q", a)
	}
	if groupKey("", [][2]string{{"v2:x", ""}}) == groupKey("x", nil) {
		t.Fatal("metadata and version keys collide")
	}
}

func TestCompoundSelectorsComputedOnceAndBounded(t *testing.T) {
	e := newEndpointer(t, source(t, fleetValues...), newFleet())
	ctx := WithMetadata(WithMetadata(context.Background(), "zone", "a"), "tier", "gold")
	call(t, e, ctx)
	if _, ok := e.groups.load(fromContext(ctx).key, fromContext(ctx).hash); !ok {
		t.Fatal("compound group not remembered")
	}
	for i := range maxCompound + 10 {
		c := WithMetadata(WithMetadata(context.Background(), "zone", "a"), "n", strings.Repeat("x", i))
		_, _ = e.Pick(c)
	}
	e.mu.Lock()
	n := len(e.compound)
	e.mu.Unlock()
	if n != maxCompound {
		t.Fatalf("remembered %d compound groups, want the bound %d", n, maxCompound)
	}
}
