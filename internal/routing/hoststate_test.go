package routing

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/topology"
)

// rackTopology is one l2 rack in an IPv4 and an IPv6 network.
const rackTopology = `networks:
  - {name: pods, cidr: 10.10.0.0/16, blockSize: 28, default: true}
  - {name: v6, cidr: "fd00:10::/48", blockSize: 120, namespaces: [six]}
topologies:
  - networks: [pods, v6]
    groups:
      - {name: rack, routing: l2, assignment: {matchLabels: {rack: "1"}}}
`

func mustTopology(t *testing.T, text string) *topology.Topology {
	t.Helper()
	topo, err := topology.Load([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func TestHostState(t *testing.T) {
	topo := mustTopology(t, rackTopology)
	rack := map[string]string{"pods": "rack", "v6": "rack"}
	hosts := []ipam.HostInfo{
		{Name: "a", IP: netip.MustParseAddr("192.0.2.1"), Groups: rack},
		{Name: "b", IP: netip.MustParseAddr("192.0.2.2"), Groups: rack},
	}
	blocks := map[string][]ipam.BlockInfo{
		"pods": {{Prefix: netip.MustParsePrefix("10.10.0.0/28"), Host: "a", Group: "rack"}, {Prefix: netip.MustParsePrefix("10.10.0.16/28"), Host: "b", Group: "rack"}},
	}
	// No IPv6 blocks: a peer's would be routed via its IPv4 address, which
	// the dataplane refuses (one address per host).
	gw := HostTable{Table: 100, Gateway: netip.MustParseAddr("169.254.1.1")}
	view := func(host string, eps ...LocalEndpoint) HostView {
		return HostView{Topology: topo, Hosts: hosts, Blocks: blocks, Host: host, Endpoints: eps}
	}
	ep := func(network, addr, dev string) LocalEndpoint {
		return LocalEndpoint{Network: network, Addr: netip.MustParseAddr(addr), Dev: dev}
	}
	tests := []struct {
		name string
		v    HostView
		t    HostTable
		want []string // routes, as dataplane.Route.String renders them, in order
		err  string
	}{
		{name: "no topology yet", v: HostView{Host: "a"}, t: gw, want: []string{"169.254.1.1/32 dev lo"}},
		{name: "host not in the snapshot", v: view("c"), t: gw, want: []string{"169.254.1.1/32 dev lo"}},
		{name: "no gateway", v: HostView{Host: "a"}, t: HostTable{Table: 100}},
		{name: "IPv6 gateway has no scope", v: HostView{Host: "a"}, t: HostTable{Table: 100, Gateway: netip.MustParseAddr("fe80::1")},
			want: []string{"fe80::1/128 dev lo"}},
		{name: "peer's blocks via the peer", v: view("b", ep("pods", "10.10.0.17", "veth1")), t: gw, want: []string{
			"169.254.1.1/32 dev lo",
			"10.10.0.0/28 via 192.0.2.1",
			"10.10.0.17/32 dev veth1",
		}},
		{name: "IPv6 endpoint has no scope", v: view("a", ep("v6", "fd00:10::5", "veth6")), t: gw, want: []string{
			"169.254.1.1/32 dev lo",
			"10.10.0.16/28 via 192.0.2.2",
			"fd00:10::5/128 dev veth6",
		}},
		{name: "host outside a network keeps nothing of it", v: HostView{Topology: topo, Host: "c", Blocks: blocks,
			Hosts:     append(slices.Clone(hosts), ipam.HostInfo{Name: "c", IP: netip.MustParseAddr("192.0.2.3"), Groups: map[string]string{"pods": "rack"}}),
			Endpoints: []LocalEndpoint{ep("v6", "fd00:10::1:5", "veth9")}}, t: gw, want: []string{
			"169.254.1.1/32 dev lo",
			"10.10.0.0/28 via 192.0.2.1",
			"10.10.0.16/28 via 192.0.2.2",
		}},
		{name: "leaf group gone from the topology", v: HostView{Topology: topo, Host: "a",
			Hosts: []ipam.HostInfo{{Name: "a", IP: netip.MustParseAddr("192.0.2.1"), Groups: map[string]string{"pods": "gone"}}}},
			t: gw, err: "network pods: host routes for \"a\": unknown host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := HostState(tt.v, tt.t)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Table != tt.t.Table {
				t.Errorf("table %d, want %d", st.Table, tt.t.Table)
			}
			var got []string
			for _, r := range st.Routes {
				got = append(got, r.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("routes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err := st.Validate(); err != nil {
				t.Errorf("the dataplane refuses the state: %v", err)
			}
		})
	}
}
