package routing

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/topology"
)

// bgpFabric: rack-1 announces its hosts' blocks, rack-2 its group's
// prefix, both to the fabric's two ToRs; the v6 network's rack speaks
// another AS; lab is l2.
const bgpFabric = `networks:
  - {name: pods, cidr: 10.10.0.0/16, blockSize: 28, default: true}
  - {name: other, cidr: 10.20.0.0/16, blockSize: 28, namespaces: [x]}
topologies:
  - networks: [pods]
    groups:
      - name: fabric
        routing: bgp
        bgp:
          asn: 64601
          peers:
            - {address: 192.168.1.2, asn: 65001, password: s3cret}
            - {address: 192.168.1.1, asn: 65001}
          gracefulRestart: 90s
        groups:
          - {name: rack-1, advertise: blocks, assignment: {matchLabels: {rack: "1"}}}
          - {name: rack-2, advertise: group, assignment: {matchLabels: {rack: "2"}}}
      - {name: lab, routing: l2, assignment: {matchLabels: {rack: "lab"}}}
  - networks: [other]
    groups:
      - name: other-fabric
        routing: bgp
        bgp:
          asn: 64700
          peers:
            - {address: 192.168.1.1, asn: 65001}
            - {address: 192.168.1.3, asn: 65003, port: 1179}
        groups:
          - {name: rack-1, advertise: blocks, assignment: {matchLabels: {rack: "1"}}}
`

func TestHostBGP(t *testing.T) {
	topo := mustTopology(t, bgpFabric)
	pfx := netip.MustParsePrefix
	addr := netip.MustParseAddr
	hosts := []ipam.HostInfo{
		{Name: "h1", IP: addr("192.168.10.1"), Groups: map[string]string{"pods": "fabric/rack-1"}},
		{Name: "h2", IP: addr("192.168.10.2"), Groups: map[string]string{"pods": "fabric/rack-2"}},
		{Name: "h3", IP: addr("192.168.10.3"), Groups: map[string]string{"pods": "lab"}},
		{Name: "h4", IP: addr("192.168.10.4"), Groups: map[string]string{"pods": "fabric/rack-1", "other": "other-fabric/rack-1"}},
		{Name: "h5", IP: addr("192.168.10.5"), Groups: map[string]string{"pods": "fabric/gone"}},
	}
	blocks := map[string][]ipam.BlockInfo{
		"pods": {
			{Prefix: pfx("10.10.0.16/28"), Host: "h1"}, {Prefix: pfx("10.10.0.0/28"), Host: "h1"}, {Prefix: pfx("10.10.0.64/28"), Host: "h1"},
			{Prefix: pfx("10.10.1.0/28"), Host: "h2"},
			{Prefix: pfx("10.10.0.32/28"), Host: "h4"},
		},
		"other": {{Prefix: pfx("10.20.0.0/28"), Host: "h4"}},
	}
	groups := map[string]map[string][]netip.Prefix{"pods": {"fabric/rack-2": {pfx("10.10.1.0/24")}}}
	tor1 := topology.BGPPeer{Address: addr("192.168.1.1"), ASN: 65001, Port: 179}
	tor2 := topology.BGPPeer{Address: addr("192.168.1.2"), ASN: 65001, Port: 179, Password: "s3cret"}
	tor3 := topology.BGPPeer{Address: addr("192.168.1.3"), ASN: 65003, Port: 1179}
	view := func(host string) HostView {
		return HostView{Topology: topo, Hosts: hosts, Blocks: blocks, Groups: groups, Host: host}
	}
	tests := []struct {
		name string
		v    HostView
		own  BGPOverrides
		want SpeakerConfig
		ok   bool
		warn []string // substrings of the warning, one each
	}{
		{name: "blocks, merged; peers by address", v: view("h1"), ok: true,
			want: SpeakerConfig{ASN: 64601, GracefulRestartSeconds: 90, Peers: []topology.BGPPeer{tor1, tor2},
				Prefixes: []netip.Prefix{pfx("10.10.0.0/27"), pfx("10.10.0.64/28")}}},
		{name: "group prefix", v: view("h2"), ok: true,
			want: SpeakerConfig{ASN: 64601, GracefulRestartSeconds: 90, Peers: []topology.BGPPeer{tor1, tor2},
				Prefixes: []netip.Prefix{pfx("10.10.1.0/24")}}},
		{name: "l2 host runs no speaker", v: view("h3")},
		{name: "not in the view", v: view("nobody")},
		{name: "no topology", v: HostView{Host: "h1"}},
		{name: "two networks: one AS, the union of peers and prefixes", v: view("h4"), ok: true,
			want: SpeakerConfig{ASN: 64601, GracefulRestartSeconds: 90, Peers: []topology.BGPPeer{tor1, tor2, tor3},
				Prefixes: []netip.Prefix{pfx("10.10.0.32/28"), pfx("10.20.0.0/28")}},
			warn: []string{"network other's group other-fabric/rack-1 asks for AS 64700, graceful restart 120s; the speaker keeps AS 64601, 90s from group fabric"}},
		{name: "the host's own AS and peers, lent the topology's password", v: view("h1"), ok: true,
			own: BGPOverrides{ASN: 4200000001, Peers: []topology.BGPPeer{{Address: addr("10.0.0.1"), ASN: 65100}, {Address: addr("192.168.1.2"), ASN: 65002}}},
			want: SpeakerConfig{ASN: 4200000001, GracefulRestartSeconds: 90,
				Peers:    []topology.BGPPeer{{Address: addr("10.0.0.1"), ASN: 65100}, {Address: addr("192.168.1.2"), ASN: 65002, Port: 179, Password: "s3cret"}},
				Prefixes: []netip.Prefix{pfx("10.10.0.0/27"), pfx("10.10.0.64/28")}}},
		{name: "leaf group gone: no speaker", v: view("h5")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, warn := HostBGP(tt.v, tt.own)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if got.ASN != tt.want.ASN || got.GracefulRestartSeconds != tt.want.GracefulRestartSeconds ||
				!slices.Equal(got.Peers, tt.want.Peers) || !slices.Equal(got.Prefixes, tt.want.Prefixes) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			var warns []string
			if warn != nil {
				warns = strings.Split(warn.Error(), "\n")
			}
			if len(warns) != len(tt.warn) {
				t.Fatalf("warnings %q, want %d", warns, len(tt.warn))
			}
			for i, w := range tt.warn {
				if !strings.Contains(warns[i], w) {
					t.Errorf("warning %q, want it to contain %q", warns[i], w)
				}
			}
		})
	}
}
