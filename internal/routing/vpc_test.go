package routing

import (
	"slices"
	"testing"

	"github.com/terrane-net/terrane/internal/topology"
)

func direct(dst, host string) VPCRoute { return VPCRoute{Dst: pfx(dst), Host: host} }

func aggregate(dst, group, host string) VPCRoute {
	return VPCRoute{Dst: pfx(dst), Host: host, Group: group}
}

// eastWest is a cloud network: zone east with racks a (three hosts, four
// blocks) and b (one host), zone west with one host owning blocks (two
// blocks) and one without, and an l2 host that is not part of the table.
// Seven blocks, seven endpoints; every vpc leaf is a subnet of L2 peers.
func eastWest() Input {
	vpc := topology.ModeVPC
	return Input{
		Groups: []Group{
			{Path: "east", Mode: vpc, Prefixes: prefixes("10.3.0.0/23")},
			{Path: "east/a", Parent: "east", Mode: vpc, Prefixes: prefixes("10.3.0.0/24")},
			{Path: "east/b", Parent: "east", Mode: vpc, Prefixes: prefixes("10.3.1.0/24")},
			{Path: "west", Mode: vpc, Prefixes: prefixes("10.4.0.0/24")},
			{Path: "dc", Mode: topology.ModeL2, Prefixes: prefixes("10.9.0.0/24")},
		},
		Hosts: []Host{
			{Name: "a1", Group: "east/a", Mode: vpc, Segment: "east/a", Blocks: prefixes("10.3.0.0/28"), Endpoints: addrs("10.3.0.1", "10.3.0.2")},
			{Name: "a2", Group: "east/a", Mode: vpc, Segment: "east/a", Blocks: prefixes("10.3.0.48/28", "10.3.0.16/28"), Endpoints: addrs("10.3.0.17")},
			{Name: "a3", Group: "east/a", Mode: vpc, Segment: "east/a", Blocks: prefixes("10.3.0.64/28"), Endpoints: addrs("10.3.0.65")},
			{Name: "b1", Group: "east/b", Mode: vpc, Segment: "east/b", Blocks: prefixes("10.3.1.0/28"), Endpoints: addrs("10.3.1.1")},
			{Name: "w1", Group: "west", Mode: vpc, Segment: "west", Blocks: prefixes("10.4.0.32/28", "10.4.0.0/28"), Endpoints: addrs("10.4.0.1", "10.4.0.33")},
			{Name: "w2", Group: "west", Mode: vpc, Segment: "west"},
			{Name: "l1", Group: "dc", Mode: topology.ModeL2, Blocks: prefixes("10.9.0.0/28"), Endpoints: addrs("10.9.0.1")},
		},
	}
}

// noEndpoints is eastWest as a server sees a pod cluster: blocks, no
// endpoints (pod addresses live on their nodes).
func noEndpoints() Input {
	in := eastWest()
	for i := range in.Hosts {
		in.Hosts[i].Endpoints = nil
	}
	return in
}

// fragmentedEast gives zone east two more prefixes no rack uses: free
// space, which changes no route.
func fragmentedEast() Input {
	in := eastWest()
	in.Groups[0].Prefixes = prefixes("10.3.6.0/24", "10.3.0.0/23", "10.3.4.0/24")
	return in
}

// twins are two groups with one host each.
func twins() Input {
	vpc := topology.ModeVPC
	return Input{
		Groups: []Group{
			{Path: "q", Mode: vpc, Prefixes: prefixes("10.6.0.0/24")},
			{Path: "p", Mode: vpc, Prefixes: prefixes("10.5.0.0/24")},
		},
		Hosts: []Host{
			{Name: "q1", Group: "q", Mode: vpc, Segment: "q", Blocks: prefixes("10.6.0.0/28", "10.6.0.32/28", "10.6.0.64/28"), Endpoints: addrs("10.6.0.1")},
			{Name: "p1", Group: "p", Mode: vpc, Segment: "p", Blocks: prefixes("10.5.0.0/28", "10.5.0.32/28", "10.5.0.64/28"), Endpoints: addrs("10.5.0.1")},
		},
	}
}

// mixedModes has a bgp rack inside a vpc zone: no route may cover the bgp
// rack's space, so only the vpc rack's space is aggregated.
func mixedModes() Input {
	vpc, bgp := topology.ModeVPC, topology.ModeBGP
	return Input{
		Groups: []Group{
			{Path: "m", Mode: vpc, Prefixes: prefixes("10.7.0.0/23")},
			{Path: "m/v", Parent: "m", Mode: vpc, Prefixes: prefixes("10.7.0.0/24")},
			{Path: "m/b", Parent: "m", Mode: bgp, Prefixes: prefixes("10.7.1.0/24")},
		},
		Hosts: []Host{
			{Name: "v1", Group: "m/v", Mode: vpc, Segment: "m/v", Blocks: prefixes("10.7.0.0/28", "10.7.0.32/28"), Endpoints: addrs("10.7.0.1")},
			{Name: "v2", Group: "m/v", Mode: vpc, Segment: "m/v", Blocks: prefixes("10.7.0.64/28")},
			{Name: "b1", Group: "m/b", Mode: bgp, Blocks: prefixes("10.7.1.0/28"), Endpoints: addrs("10.7.1.1")},
		},
	}
}

// badState breaks the invariants routing relies on: a host of an unknown
// group holds a block inside group x, a host of y holds a block outside y,
// y3's block lies inside y1's, and y2 has an endpoint in x1's block. The
// orphan is not part of the table (no route covers its block); every other
// block still goes to its owner or its subnet, and the cloud's longest
// match decides which endpoints are direct.
func badState() Input {
	vpc := topology.ModeVPC
	return Input{
		Groups: []Group{
			{Path: "x", Mode: vpc, Prefixes: prefixes("10.8.0.0/24")},
			{Path: "y", Mode: vpc, Prefixes: prefixes("10.8.1.0/24")},
		},
		Hosts: []Host{
			{Name: "x1", Group: "x", Mode: vpc, Segment: "x", Blocks: prefixes("10.8.0.0/28", "10.8.0.32/28"), Endpoints: addrs("10.8.0.1")},
			{Name: "lost", Group: "gone", Mode: vpc, Segment: "gone", Blocks: prefixes("10.8.0.64/28"), Endpoints: addrs("10.8.0.65")},
			{Name: "y1", Group: "y", Mode: vpc, Segment: "y", Blocks: prefixes("10.8.1.0/28", "10.8.1.32/28", "10.8.9.0/28")},
			{Name: "y2", Group: "y", Mode: vpc, Segment: "y", Blocks: prefixes("10.8.1.64/28"), Endpoints: addrs("10.8.0.2")},
			{Name: "y3", Group: "y", Mode: vpc, Segment: "y", Blocks: prefixes("10.8.1.0/29"), Endpoints: addrs("10.8.1.1")},
		},
	}
}

func v6Zone() Input {
	vpc := topology.ModeVPC
	return Input{
		Groups: []Group{
			{Path: "z", Mode: vpc, Prefixes: prefixes("fd00:3::/56")},
			{Path: "z/r1", Parent: "z", Mode: vpc, Prefixes: prefixes("fd00:3::/64")},
			{Path: "z/r2", Parent: "z", Mode: vpc, Prefixes: prefixes("fd00:3:0:1::/64")},
		},
		Hosts: []Host{
			{Name: "h1", Group: "z/r1", Mode: vpc, Segment: "z/r1", Blocks: prefixes("fd00:3::200/120", "fd00:3::/120"), Endpoints: addrs("fd00:3::1")},
			{Name: "h2", Group: "z/r1", Mode: vpc, Segment: "z/r1", Blocks: prefixes("fd00:3::400/120"), Endpoints: addrs("fd00:3::401")},
			{Name: "h3", Group: "z/r2", Mode: vpc, Segment: "z/r2", Blocks: prefixes("fd00:3:0:1::/120"), Endpoints: addrs("fd00:3:0:1::1")},
		},
	}
}

// busySubnet is zone z with subnet a holding most of it (its blocks in two
// pieces) and subnet b one block between them: one aggregate over the zone
// towards a's host, with b's block as the exception.
func busySubnet() Input {
	vpc := topology.ModeVPC
	return Input{
		Groups: []Group{
			{Path: "z", Mode: vpc, Prefixes: prefixes("10.5.0.0/22")},
			{Path: "z/a", Parent: "z", Mode: vpc, Prefixes: prefixes("10.5.0.0/24", "10.5.2.0/23")},
			{Path: "z/b", Parent: "z", Mode: vpc, Prefixes: prefixes("10.5.1.0/24")},
		},
		Hosts: []Host{
			{Name: "a1", Group: "z/a", Mode: vpc, Segment: "z/a", Blocks: prefixes("10.5.0.0/24", "10.5.2.0/23"), Endpoints: addrs("10.5.0.1", "10.5.3.1")},
			{Name: "a2", Group: "z/a", Mode: vpc, Segment: "z/a"},
			{Name: "b1", Group: "z/b", Mode: vpc, Segment: "z/b", Blocks: prefixes("10.5.1.0/28"), Endpoints: addrs("10.5.1.1")},
		},
	}
}

func TestVPC(t *testing.T) {
	// The smallest all-direct table: a2's aggregate over rack a (its two
	// blocks and free space) with a1's and a3's blocks as exceptions, and
	// b1 and w1 each over their whole subnet. Of equal tables the widest
	// routes: blocks claimed later in the free space they cover change no
	// route.
	allDirect := []VPCRoute{
		direct("10.3.0.0/24", "a2"), direct("10.3.0.0/28", "a1"), direct("10.3.0.64/26", "a3"),
		direct("10.3.1.0/24", "b1"), direct("10.4.0.0/24", "w1"),
	}
	// The optimum: subnet east/a takes an aggregate (any of its hosts
	// delivers, they are L2 peers); east/b and west have one owner each,
	// whose direct routes are already as few. Zone east never points at one
	// subnet for another's addresses: that host could not deliver them.
	optimum := []VPCRoute{aggregate("10.3.0.0/24", "east/a", ""), direct("10.3.1.0/24", "b1"), direct("10.4.0.0/24", "w1")}
	tests := []struct {
		name   string
		in     Input
		budget int
		want   []VPCRoute
		fits   bool
		share  float64
		min    int
	}{
		{"budget large: all direct", eastWest(), 50, allDirect, true, 1, 3},
		{"budget exactly the direct optimum", eastWest(), 5, allDirect, true, 1, 3},
		{"one under: the subnet saving most aggregates", eastWest(), 4, optimum, true, 3.0 / 7, 3},
		{"the optimum", eastWest(), 3, optimum, true, 3.0 / 7, 3},
		{"below the optimum: the optimum, not fitting", eastWest(), 1, optimum, false, 3.0 / 7, 3},
		{"no endpoints known: block addresses weigh the share", noEndpoints(), 4, optimum, true, 48.0 / 112, 3},
		{"no endpoints, all direct", noEndpoints(), 5, allDirect, true, 1, 3},
		{"more free space changes nothing", fragmentedEast(), 0, optimum, false, 3.0 / 7, 3},
		{"one owner per group: direct is optimal", twins(), 2, []VPCRoute{direct("10.5.0.0/24", "p1"), direct("10.6.0.0/24", "q1")}, true, 1, 2},
		{"a bgp rack's space stays out of the table", mixedModes(), 0, []VPCRoute{aggregate("10.7.0.0/24", "m/v", "")}, false, 0, 1},
		{"bad state: every address still goes to a host that delivers it", badState(), 0, []VPCRoute{
			direct("10.8.0.0/26", "x1"), aggregate("10.8.1.0/24", "y", ""), direct("10.8.9.0/28", "y1"),
		}, false, 1.0 / 3, 3},
		{"ipv6 direct", v6Zone(), 3, []VPCRoute{
			direct("fd00:3::/56", "h1"), direct("fd00:3::400/118", "h2"), direct("fd00:3:0:1::/64", "h3"),
		}, true, 1, 2},
		// The zone towards subnet r2's only host, subnet r1 the exception.
		{"ipv6 aggregated", v6Zone(), 2, []VPCRoute{direct("fd00:3::/56", "h3"), aggregate("fd00:3::/64", "z/r1", "")}, true, 1.0 / 3, 2},
		{"ipv6 below the optimum", v6Zone(), 0, []VPCRoute{direct("fd00:3::/56", "h3"), aggregate("fd00:3::/64", "z/r1", "")}, false, 1.0 / 3, 2},
		{"a zone aggregate with a more specific exception", busySubnet(), 2, []VPCRoute{direct("10.5.0.0/22", "a1"), direct("10.5.1.0/24", "b1")}, true, 1, 2},
		{"empty", Input{}, 0, nil, true, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := VPC(tt.in, tt.budget)
			if !slices.Equal(got.Routes, tt.want) {
				t.Errorf("routes\n got %v\nwant %v", got.Routes, tt.want)
			}
			if got.Fits != tt.fits || got.Budget != tt.budget {
				t.Errorf("Fits, Budget = %v, %d; want %v, %d", got.Fits, got.Budget, tt.fits, tt.budget)
			}
			if got.DirectShare != tt.share {
				t.Errorf("DirectShare = %v, want %v", got.DirectShare, tt.share)
			}
			if n := MinVPCRoutes(tt.in); n != tt.min {
				t.Errorf("MinVPCRoutes = %d, want %d", n, tt.min)
			}
		})
	}
}
