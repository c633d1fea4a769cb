package routing

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = pfx(s)
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = addr(s)
	}
	return out
}

func local(host, a string) Route { return Route{Dst: hostPrefix(addr(a)), Host: host, Local: true} }

func via(dst, host, ip string) Route { return Route{Dst: pfx(dst), Via: addr(ip), Host: host} }

// flatL2 is one rack on one segment: a with two adjacent blocks, b with two
// apart, c without blocks yet; d is on another segment and e on none.
func flatL2() Input {
	return Input{
		Groups: []Group{{Path: "rack", Mode: topology.ModeL2, Prefixes: prefixes("10.1.0.0/24")}},
		Hosts: []Host{
			{Name: "a", IP: addr("192.168.0.1"), Group: "rack", Segment: "s1", Blocks: prefixes("10.1.0.16/28", "10.1.0.0/28"), Endpoints: addrs("10.1.0.17", "10.1.0.2", "10.1.0.17")},
			{Name: "b", IP: addr("192.168.0.2"), Group: "rack", Segment: "s1", Blocks: prefixes("10.1.0.64/28", "10.1.0.32/28"), Endpoints: addrs("10.1.0.33")},
			{Name: "c", IP: addr("192.168.0.3"), Group: "rack", Segment: "s1"},
			{Name: "d", IP: addr("192.168.0.4"), Group: "rack", Segment: "s2", Blocks: prefixes("10.1.0.128/28")},
			{Name: "e", IP: addr("192.168.0.5"), Group: "rack", Blocks: prefixes("10.1.0.144/28"), Endpoints: addrs("10.1.0.145")},
		},
	}
}

func flatL2v6() Input {
	return Input{
		Groups: []Group{{Path: "rack", Mode: topology.ModeL2, Prefixes: prefixes("fd00:1::/64")}},
		Hosts: []Host{
			{Name: "a", IP: addr("fd00:ffff::1"), Group: "rack", Segment: "s", Blocks: prefixes("fd00:1::100/120", "fd00:1::/120")},
			{Name: "b", IP: addr("fd00:ffff::2"), Group: "rack", Segment: "s", Blocks: prefixes("fd00:1::300/120"), Endpoints: addrs("fd00:1::301")},
			{Name: "c", IP: addr("fd00:ffff::3"), Group: "rack", Segment: "s", Blocks: prefixes("fd00:1::500/120", "fd00:1::400/120", "fd00:1::600/120")},
		},
	}
}

func TestHostRoutes(t *testing.T) {
	tests := []struct {
		name string
		in   Input
		host string
		want []Route
	}{
		{"endpoints and peers", flatL2(), "a", []Route{
			local("a", "10.1.0.2"), local("a", "10.1.0.17"),
			via("10.1.0.32/28", "b", "192.168.0.2"), via("10.1.0.64/28", "b", "192.168.0.2"),
		}},
		{"new host reaches every peer", flatL2(), "c", []Route{
			via("10.1.0.0/27", "a", "192.168.0.1"),
			via("10.1.0.32/28", "b", "192.168.0.2"), via("10.1.0.64/28", "b", "192.168.0.2"),
		}},
		{"alone on its segment", flatL2(), "d", nil},
		{"no segment", flatL2(), "e", []Route{local("e", "10.1.0.145")}},
		{"ipv6", flatL2v6(), "b", []Route{
			via("fd00:1::/119", "a", "fd00:ffff::1"),
			local("b", "fd00:1::301"),
			via("fd00:1::400/119", "c", "fd00:ffff::3"), via("fd00:1::600/120", "c", "fd00:ffff::3"),
		}},
		{"bgp peers on a segment still route directly", func() Input {
			in := flatL2()
			for i := range in.Hosts {
				in.Hosts[i].Mode = topology.ModeBGP
			}
			return in
		}(), "c", []Route{
			via("10.1.0.0/27", "a", "192.168.0.1"),
			via("10.1.0.32/28", "b", "192.168.0.2"), via("10.1.0.64/28", "b", "192.168.0.2"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := HostRoutes(tt.in, tt.host)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("HostRoutes(%q)\n got %v\nwant %v", tt.host, got, tt.want)
			}
		})
	}
}

func TestHostRoutesErrors(t *testing.T) {
	dup := flatL2()
	dup.Hosts = append(dup.Hosts, Host{Name: "a"})
	badEndpoint := flatL2()
	badEndpoint.Hosts[0].Endpoints = append(badEndpoint.Hosts[0].Endpoints, netip.Addr{})
	tests := []struct {
		name    string
		in      Input
		host    string
		unknown bool
	}{
		{"unknown host", flatL2(), "zz", true},
		{"empty input", Input{}, "a", true},
		{"name used twice", dup, "a", false},
		{"invalid endpoint", badEndpoint, "a", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := HostRoutes(tt.in, tt.host)
			if err == nil {
				t.Fatalf("HostRoutes(%q) = %v, want an error", tt.host, got)
			}
			if errors.Is(err, ErrUnknownHost) != tt.unknown {
				t.Errorf("error %q: errors.Is(ErrUnknownHost) = %v, want %v", err, !tt.unknown, tt.unknown)
			}
		})
	}
}

// peerWorld is what host self's routes to its L2 peers must do: a peer's
// block goes to that peer; free space of self's segment (prefixes of the
// segment's group and of l2 groups under it, where no block lies) is free;
// self's own blocks and every other host's keep the default.
func peerWorld(t *testing.T, in Input, space netip.Prefix, self Host) *levelWorld {
	var names []string
	peer := map[string]bool{}
	for _, h := range in.Hosts {
		if self.Segment != "" && h.Name != self.Name && h.Segment == self.Segment && len(h.Blocks) > 0 {
			names = append(names, "host:"+h.Name)
			peer[h.Name] = true
		}
	}
	w := newLevelWorld(space, names)
	own := owners(t, in, space)
	for i := range 256 {
		if own[i] != "" {
			if peer[own[i]] {
				w.accept(i, "host:"+own[i])
			}
			continue
		}
		g := deepestGroup(t, in, space, i)
		if self.Segment != "" && g != nil && (g.Path == self.Segment || g.Mode == topology.ModeL2 && isAtOrUnder(in, g.Path, self.Segment)) {
			w.free(i)
		}
	}
	return w
}

// TestHostRoutesRandom checks kernel routes on random states: one host
// route per distinct endpoint, and routes via peers that deliver every
// peer's block to its owner and nothing else, exactly as many as the
// optimum.
func TestHostRoutesRandom(t *testing.T) {
	forSeeds(t, 500, func(t *testing.T, r *rand.Rand, space netip.Prefix) {
		in := randomInput(r, space)
		mixed := shuffled(r, in)
		for _, h := range in.Hosts {
			got, err := HostRoutes(in, h.Name)
			if err != nil {
				t.Fatal(err)
			}
			if again, _ := HostRoutes(mixed, h.Name); !slices.Equal(got, again) {
				t.Fatalf("%s: routes depend on input order:\n%v\n%v", h.Name, got, again)
			}
			if !slices.IsSortedFunc(got, func(a, b Route) int { return netx.Less(a.Dst, b.Dst) }) {
				t.Errorf("%s: routes not sorted: %v", h.Name, got)
			}
			var locals, wantLocals []Route
			for _, a := range h.Endpoints {
				wantLocals = append(wantLocals, Route{Dst: netip.PrefixFrom(a, a.BitLen()), Host: h.Name, Local: true})
			}
			w := peerWorld(t, in, space, h)
			var peers []netx.TargetRoute
			for _, rt := range got {
				if rt.Local {
					locals = append(locals, rt)
					continue
				}
				if p := hostByName(in, rt.Host); p.IP != rt.Via {
					t.Fatalf("%v: via %s, peer %s is at %s", rt, rt.Via, p.Name, p.IP)
				}
				peers = append(peers, netx.TargetRoute{Prefix: rt.Dst, Target: w.target("host:" + rt.Host)})
			}
			if !sameRoutes(locals, wantLocals) {
				t.Errorf("HostRoutes(%s) locals\n got %v\nwant (any order) %v", h.Name, locals, wantLocals)
			}
			w.check(t, "routes of "+h.Name, peers)
			if n, err := PeerRoutesOptimum(in, h.Name); err != nil || n != len(peers) {
				t.Fatalf("PeerRoutesOptimum(%s) = %d, %v; routes %d", h.Name, n, err, len(peers))
			}
		}
	})
}

func sameRoutes(a, b []Route) bool {
	key := func(r Route) string { return r.Dst.String() + " " + r.Host + " " + r.Via.String() }
	cmpRoute := func(x, y Route) int {
		if kx, ky := key(x), key(y); kx != ky {
			if kx < ky {
				return -1
			}
			return 1
		}
		return 0
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, cmpRoute)
	slices.SortFunc(b, cmpRoute)
	return slices.Equal(a, b)
}

// TestHostRoutesPeerWithoutAddress: a peer with no address of the
// network's family (an IPv6 network's peer whose agent has no --ip6) gets
// no route; its blocks keep the default, and the other peers' routes do
// not change.
func TestHostRoutesPeerWithoutAddress(t *testing.T) {
	in := flatL2()
	in.Hosts[1].IP = netip.Addr{}
	got, err := HostRoutes(in, "c")
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{via("10.1.0.0/27", "a", "192.168.0.1")}
	if !slices.Equal(got, want) {
		t.Errorf("HostRoutes(c) with b unaddressed\n got %v\nwant %v", got, want)
	}
}
