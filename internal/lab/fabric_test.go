package lab

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/terrane-net/terrane/internal/dataplane"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/topology"
)

// fabricScenario: racks a and b behind tor-a and tor-b, a third segment
// "edge" without a router. The topology's group modes come from mode.
func fabricScenario(t *testing.T, modeA, modeB string) (*Scenario, *topology.Topology) {
	t.Helper()
	doc := `topology: |
  networks:
    - {name: pods, cidr: 10.0.0.0/16, blockSize: 28}
  topologies:
    - networks: [pods]
      groups:
        - name: a
          assignment: {matchLabels: {rack: a}}
          routing: ` + modeA + `
        - name: b
          assignment: {matchLabels: {rack: b}}
          routing: ` + modeB + `
        - name: e
          assignment: {matchLabels: {rack: e}}
segments:
  - {name: a, subnet: 192.168.1.0/24, router: tor-a}
  - {name: b, subnet: 192.168.2.0/24, router: tor-b}
  - {name: edge, subnet: 192.168.3.0/24}
routers:
  - {name: tor-a, spine: 172.31.0.1/24}
  - {name: tor-b, spine: 172.31.0.2/24}
hosts:
  - {name: a2, segment: a, ip: 192.168.1.12, labels: {rack: a}}
  - {name: a1, segment: a, ip: 192.168.1.11, labels: {rack: a}}
  - {name: b1, segment: b, ip: 192.168.2.11, labels: {rack: b}}
  - {name: b2, segment: b, ip: 192.168.2.12, labels: {rack: b}}
  - {name: e1, segment: edge, ip: 192.168.3.11, labels: {rack: e}}
`
	sc, err := ParseScenario([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	topo, err := sc.Compile()
	if err != nil {
		t.Fatal(err)
	}
	return sc, topo
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// testFabricState: hosts in groups by their rack label; blocks as given.
func testFabricState(sc *Scenario, groups map[string][]string, blocks map[string][]string) FabricState {
	fs := FabricState{Groups: map[string]map[string][]netip.Prefix{"pods": {}}, Blocks: map[string][]ipam.BlockInfo{}}
	for g, ps := range groups {
		for _, p := range ps {
			fs.Groups["pods"][g] = append(fs.Groups["pods"][g], pfx(p))
		}
	}
	for _, h := range sc.Hosts {
		fs.Hosts = append(fs.Hosts, ipam.HostInfo{Name: h.Name, IP: h.IP, Labels: h.Labels, Groups: map[string]string{"pods": h.Labels["rack"]}})
		for _, b := range blocks[h.Name] {
			fs.Blocks["pods"] = append(fs.Blocks["pods"], ipam.BlockInfo{Prefix: pfx(b), Host: h.Name, Group: h.Labels["rack"]})
		}
	}
	// A host the server knows but the scenario does not: ignored.
	fs.Hosts = append(fs.Hosts, ipam.HostInfo{Name: "stranger", IP: netip.MustParseAddr("192.168.1.99"), Groups: map[string]string{"pods": "a"}})
	return fs
}

func render(routes map[string][]dataplane.Route) map[string]string {
	out := map[string]string{}
	for r, rs := range routes {
		var lines []string
		for _, x := range rs {
			lines = append(lines, x.String())
		}
		out[r] = strings.Join(lines, "\n")
	}
	return out
}

var (
	underlayA = "192.168.2.0/24 via 172.31.0.2"
	underlayB = "192.168.1.0/24 via 172.31.0.1"
)

func TestRouterRoutes(t *testing.T) {
	groups := map[string][]string{"a": {"10.0.0.0/27", "10.0.0.32/28"}, "b": {"10.0.64.0/26"}, "e": {"10.0.128.0/26"}}
	blocks := map[string][]string{
		"a1": {"10.0.0.0/28", "10.0.0.16/28"}, "a2": {"10.0.0.32/28"},
		"b1": {"10.0.64.0/28", "10.0.64.32/28"}, "b2": {"10.0.64.16/28"},
		"e1": {"10.0.128.0/28"},
	}
	tests := []struct {
		name         string
		modeA, modeB string
		nilTopology  bool
		want         map[string]string
	}{
		{
			name: "l2 racks: group prefixes via the first host, and via the owner's router elsewhere", modeA: "l2", modeB: "l2",
			want: map[string]string{
				"tor-a": "10.0.0.0/27 via 192.168.1.11\n10.0.0.32/28 via 192.168.1.11\n10.0.64.0/26 via 172.31.0.2\n" + underlayA,
				"tor-b": "10.0.0.0/27 via 172.31.0.1\n10.0.0.32/28 via 172.31.0.1\n10.0.64.0/26 via 192.168.2.11\n" + underlayB,
			},
		},
		{
			name: "bgp racks: each host's blocks, merged, via the host", modeA: "bgp", modeB: "bgp",
			want: map[string]string{
				"tor-a": "10.0.0.0/27 via 192.168.1.11\n10.0.0.32/28 via 192.168.1.12\n10.0.64.0/28 via 172.31.0.2\n10.0.64.16/28 via 172.31.0.2\n10.0.64.32/28 via 172.31.0.2\n" + underlayA,
				"tor-b": "10.0.0.0/27 via 172.31.0.1\n10.0.0.32/28 via 172.31.0.1\n10.0.64.0/28 via 192.168.2.11\n10.0.64.16/28 via 192.168.2.12\n10.0.64.32/28 via 192.168.2.11\n" + underlayB,
			},
		},
		{
			name: "mixed: vpc rack by blocks, l2 rack by prefix", modeA: "vpc", modeB: "l2",
			want: map[string]string{
				"tor-a": "10.0.0.0/27 via 192.168.1.11\n10.0.0.32/28 via 192.168.1.12\n10.0.64.0/26 via 172.31.0.2\n" + underlayA,
				"tor-b": "10.0.0.0/27 via 172.31.0.1\n10.0.0.32/28 via 172.31.0.1\n10.0.64.0/26 via 192.168.2.11\n" + underlayB,
			},
		},
		{
			name: "no topology yet: the underlay only", modeA: "l2", modeB: "l2", nilTopology: true,
			want: map[string]string{"tor-a": underlayA, "tor-b": underlayB},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, topo := fabricScenario(t, tt.modeA, tt.modeB)
			if tt.nilTopology {
				topo = nil
			}
			got := RouterRoutes(sc, topo, testFabricState(sc, groups, blocks))
			if d := cmp.Diff(tt.want, render(got)); d != "" {
				t.Errorf("routes (-want +got):\n%s", d)
			}
		})
	}
}

// A group spread over two routers cannot be reached through one host: its
// hosts' blocks are routed one by one.
func TestRouterRoutesGroupAcrossRouters(t *testing.T) {
	sc, topo := fabricScenario(t, "l2", "l2")
	for i := range sc.Hosts {
		if sc.Hosts[i].Name == "b1" {
			sc.Hosts[i].Labels = map[string]string{"rack": "a"} // b1 joins group a from rack b
		}
	}
	fs := testFabricState(sc, map[string][]string{"a": {"10.0.0.0/26"}}, map[string][]string{"a1": {"10.0.0.0/28"}, "b1": {"10.0.0.16/28"}})
	got := render(RouterRoutes(sc, topo, fs))
	want := map[string]string{
		"tor-a": "10.0.0.0/28 via 192.168.1.11\n10.0.0.16/28 via 172.31.0.2\n" + underlayA,
		"tor-b": "10.0.0.0/28 via 172.31.0.1\n10.0.0.16/28 via 192.168.2.11\n" + underlayB,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("routes (-want +got):\n%s", d)
	}
}

// Properties over the shipped two-racks scenario with growing state: every
// next hop is directly connected to the router (an address of one of its
// segments, or another router's spine address); every pod route covers
// only space of one group; at most one route per destination; the same
// input in another order gives the same routes.
func TestRouterRoutesProperties(t *testing.T) {
	sc, topo, err := LoadScenario("two-racks")
	if err != nil {
		t.Fatal(err)
	}
	fs := FabricState{Groups: map[string]map[string][]netip.Prefix{"racks": {
		"rack-1": {pfx("10.20.0.0/25"), pfx("10.20.4.0/24")}, "rack-2": {pfx("10.20.128.0/25")},
	}}}
	for _, h := range sc.Hosts {
		fs.Hosts = append(fs.Hosts, ipam.HostInfo{Name: h.Name, IP: h.IP, Groups: map[string]string{"racks": "rack-" + h.Labels["rack"]}})
	}
	got := RouterRoutes(sc, topo, fs)
	// Reversed input.
	rev := FabricState{Groups: fs.Groups}
	for i := len(fs.Hosts) - 1; i >= 0; i-- {
		rev.Hosts = append(rev.Hosts, fs.Hosts[i])
	}
	if d := cmp.Diff(render(got), render(RouterRoutes(sc, topo, rev))); d != "" {
		t.Errorf("order changes the routes:\n%s", d)
	}
	for _, r := range sc.Routers {
		seen := map[netip.Prefix]bool{}
		for _, rt := range got[r.Name] {
			if seen[rt.Dst] {
				t.Errorf("%s: two routes to %s", r.Name, rt.Dst)
			}
			seen[rt.Dst] = true
			connected := r.Spine.Masked().Contains(rt.Via) && rt.Via != r.Spine.Addr()
			for _, s := range sc.Segments {
				if s.Router == r.Name && s.Subnet.Contains(rt.Via) {
					connected = true
				}
			}
			if !connected {
				t.Errorf("%s: %s: next hop not directly connected", r.Name, rt)
			}
			inside := 0
			for _, ps := range fs.Groups["racks"] {
				for _, p := range ps {
					if p.Contains(rt.Dst.Addr()) && p.Bits() <= rt.Dst.Bits() {
						inside++
					}
				}
			}
			if !strings.HasPrefix(rt.Dst.String(), "192.168.") && inside != 1 {
				t.Errorf("%s: %s covers space outside one group's prefixes", r.Name, rt)
			}
		}
		if len(got[r.Name]) != 4 { // 3 group prefixes + the other rack's segment
			t.Errorf("%s: %d routes, want 4: %v", r.Name, len(got[r.Name]), got[r.Name])
		}
	}
}
