package routing

import (
	"errors"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// bgpRacks has rack r1 announcing blocks and rack r2 announcing its group
// prefixes (two of them adjacent, so they merge), plus an l2 host.
func bgpRacks() Input {
	bgp, blocks, group := topology.ModeBGP, topology.AdvertiseBlocks, topology.AdvertiseGroup
	return Input{
		Groups: []Group{
			{Path: "z", Mode: bgp, Prefixes: prefixes("10.2.0.0/23")},
			{Path: "z/r1", Parent: "z", Mode: bgp, Prefixes: prefixes("10.2.0.0/25")},
			{Path: "z/r2", Parent: "z", Mode: bgp, Prefixes: prefixes("10.2.0.192/26", "10.2.0.128/26", "10.2.1.0/26")},
			{Path: "v6", Mode: bgp, Prefixes: prefixes("fd00:2::/64")},
			{Path: "l2", Mode: topology.ModeL2, Prefixes: prefixes("10.9.0.0/24")},
		},
		Hosts: []Host{
			{Name: "h1", Group: "z/r1", Mode: bgp, Advertise: blocks, Blocks: prefixes("10.2.0.16/28", "10.2.0.0/28")},
			{Name: "h2", Group: "z/r1", Mode: bgp, Advertise: blocks, Blocks: prefixes("10.2.0.96/28", "10.2.0.64/28")},
			{Name: "h3", Group: "z/r1", Mode: bgp, Advertise: blocks, Blocks: prefixes("10.2.0.48/28")},
			{Name: "h3b", Group: "z/r1", Mode: bgp, Advertise: blocks},
			{Name: "h4", Group: "z/r2", Mode: bgp, Advertise: group, Blocks: prefixes("10.2.0.128/28")},
			{Name: "h5", Group: "z/r2", Mode: bgp, Advertise: group, Blocks: prefixes("10.2.1.0/28")},
			{Name: "h6", Group: "v6", Mode: bgp, Advertise: blocks, Blocks: prefixes("fd00:2::40/122", "fd00:2::/122", "fd00:2::100/120")},
			{Name: "h7", Group: "v6", Mode: bgp, Advertise: group},
			{Name: "l1", Group: "l2", Mode: topology.ModeL2, Blocks: prefixes("10.9.0.0/28")},
		},
	}
}

func TestAdvertisements(t *testing.T) {
	tests := []struct {
		host string
		want []netip.Prefix
	}{
		{"h1", prefixes("10.2.0.0/27")},
		{"h2", prefixes("10.2.0.64/26")}, // 80/28 and 112/28 are free
		{"h3", prefixes("10.2.0.48/28")},
		{"h3b", nil},
		{"h4", prefixes("10.2.0.128/25", "10.2.1.0/26")},
		{"h5", prefixes("10.2.0.128/25", "10.2.1.0/26")},
		{"h6", prefixes("fd00:2::/121", "fd00:2::100/120")}, // h7 announces the group whole
		{"h7", prefixes("fd00:2::/64")},
		{"l1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			got, err := Advertisements(bgpRacks(), tt.host)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Advertisements(%s) = %v, want %v", tt.host, got, tt.want)
			}
		})
	}
}

func TestAdvertisementsErrors(t *testing.T) {
	in := bgpRacks()
	in.Hosts = append(in.Hosts,
		Host{Name: "lost", Group: "gone", Mode: topology.ModeBGP, Advertise: topology.AdvertiseGroup},
		Host{Name: "odd", Group: "z/r1", Mode: topology.ModeBGP, Advertise: topology.Advertise(7)})
	for _, tt := range []struct {
		host string
		is   error
	}{{"nobody", ErrUnknownHost}, {"lost", ErrUnknownGroup}, {"odd", nil}} {
		t.Run(tt.host, func(t *testing.T) {
			got, err := Advertisements(in, tt.host)
			if err == nil {
				t.Fatalf("Advertisements(%s) = %v, want an error", tt.host, got)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %q", err, tt.is)
			}
		})
	}
	// The ToR still learns what the healthy hosts announce.
	if got := ToRRoutes(in)["z/r1"]; len(got) != 3 {
		t.Errorf("ToR of z/r1 with broken hosts learns %v, want 3 routes", got)
	}
}

func TestToRRoutes(t *testing.T) {
	// Every ToR learns two routes: the first path wins.
	tie := bgpRacks()
	tie.Hosts[1].Blocks = prefixes("10.2.0.64/28")
	tie.Hosts[2].Blocks = nil
	tie.Hosts[6].Blocks = prefixes("fd00:2::/122")
	tests := []struct {
		name      string
		in        Input
		want      map[string][]netip.Prefix
		wantGroup string
		wantN     int
	}{
		{"blocks and group", bgpRacks(), map[string][]netip.Prefix{
			"z/r1": prefixes("10.2.0.0/27", "10.2.0.48/28", "10.2.0.64/26"),
			"z/r2": prefixes("10.2.0.128/25", "10.2.1.0/26"),
			"v6":   prefixes("fd00:2::/64", "fd00:2::/121", "fd00:2::100/120"),
		}, "v6", 3},
		{"tie goes to the first path", tie, map[string][]netip.Prefix{
			"z/r1": prefixes("10.2.0.0/27", "10.2.0.64/28"),
			"z/r2": prefixes("10.2.0.128/25", "10.2.1.0/26"),
			"v6":   prefixes("fd00:2::/64", "fd00:2::/122"),
		}, "v6", 2},
		{"no bgp", flatL2(), map[string][]netip.Prefix{}, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ToRRoutes(tt.in)
			if !maps.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("ToRRoutes = %v, want %v", got, tt.want)
			}
			if g, n := MaxToRRoutes(tt.in); g != tt.wantGroup || n != tt.wantN {
				t.Errorf("MaxToRRoutes = %q, %d; want %q, %d", g, n, tt.wantGroup, tt.wantN)
			}
		})
	}
}

// torWorld is what the ToR of bgp leaf group g must learn from the hosts
// announcing their blocks: each such host's block goes to it; g's own
// space no block holds is free; everything else keeps the ToR's default.
func torWorld(t *testing.T, in Input, space netip.Prefix, g string) *levelWorld {
	var names []string
	for _, h := range in.Hosts {
		if h.Group == g && h.Mode == topology.ModeBGP && h.Advertise == topology.AdvertiseBlocks {
			names = append(names, "host:"+h.Name)
		}
	}
	w := newLevelWorld(space, names)
	grp, _ := groupOf(in, g)
	mine := setOf(t, space, grp.Prefixes...)
	own := owners(t, in, space)
	for i := range 256 {
		switch {
		case own[i] != "" && slices.Contains(names, "host:"+own[i]):
			w.accept(i, "host:"+own[i])
		case own[i] == "" && mine[i]:
			w.free(i)
		}
	}
	return w
}

// TestAdvertisementsRandom checks each ToR's announcements against the
// optimum and forwarding (every block of the group to its owner, nothing
// outside the group), group announcements against the oracle's cover of
// the group's prefixes, and the ToR view against the union.
func TestAdvertisementsRandom(t *testing.T) {
	forSeeds(t, 500, func(t *testing.T, r *rand.Rand, space netip.Prefix) {
		in := randomInput(r, space)
		wantToR := map[string]map[netip.Prefix]bool{}
		byGroup := map[string][]netx.TargetRoute{}
		for _, h := range in.Hosts {
			got, err := Advertisements(in, h.Name)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case h.Mode != topology.ModeBGP:
				if got != nil {
					t.Fatalf("%s (%v) announces %v", h.Name, h.Mode, got)
				}
				continue
			case h.Advertise == topology.AdvertiseBlocks:
				w := torWorld(t, in, space, h.Group)
				for _, p := range got {
					byGroup[h.Group] = append(byGroup[h.Group], netx.TargetRoute{Prefix: p, Target: w.target("host:" + h.Name)})
				}
			default:
				leaf, _ := groupOf(in, h.Group)
				if want := oracleCover(space, setOf(t, space, leaf.Prefixes...)); !slices.Equal(got, want) {
					t.Errorf("Advertisements(%s, group) = %v, want %v", h.Name, got, want)
				}
			}
			if wantToR[h.Group] == nil {
				wantToR[h.Group] = map[netip.Prefix]bool{}
			}
			for _, p := range got {
				wantToR[h.Group][p] = true
			}
		}
		for g, routes := range byGroup {
			w := torWorld(t, in, space, g)
			w.check(t, "ToR of "+g, routes)
			if n := ToROptimum(in, g); n != len(routes) {
				t.Fatalf("ToROptimum(%s) = %d, announced %d", g, n, len(routes))
			}
		}
		got := ToRRoutes(in)
		if len(got) != len(wantToR) {
			t.Errorf("ToRRoutes has %d groups, want %d", len(got), len(wantToR))
		}
		maxGroup, maxN := "", 0
		for g, set := range wantToR {
			want := slices.SortedFunc(maps.Keys(set), func(a, b netip.Prefix) int {
				if c := a.Addr().Compare(b.Addr()); c != 0 {
					return c
				}
				return a.Bits() - b.Bits()
			})
			if !slices.Equal(got[g], want) {
				t.Errorf("ToRRoutes[%s] = %v, want %v", g, got[g], want)
			}
			if len(want) > maxN || (len(want) == maxN && (maxGroup == "" || g < maxGroup)) {
				maxGroup, maxN = g, len(want)
			}
		}
		if g, n := MaxToRRoutes(shuffled(r, in)); g != maxGroup || n != maxN {
			t.Errorf("MaxToRRoutes = %q, %d; want %q, %d", g, n, maxGroup, maxN)
		}
		if g, n := MaxToROptimum(shuffled(r, in)); g != maxGroup || n != maxN {
			t.Errorf("MaxToROptimum = %q, %d; want %q, %d", g, n, maxGroup, maxN)
		}
	})
}
