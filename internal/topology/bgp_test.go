package topology

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// bgpTree is a zone (bgp, with a bgp block) holding a rack that inherits it,
// a rack with its own block and an l2 rack.
const bgpTree = oneNet + `
topologies:
  - networks: [a]
    groups:
      - name: zone
        routing: bgp
        bgp:
          asn: 64601
          peers:
            - {address: 192.168.1.1, asn: 65001}
            - {address: "fd00::1", asn: 4200000001, password: s3cret, port: 1179}
          gracefulRestart: 2m
        groups:
          - name: rack-1
          - name: rack-2
            advertise: group
            bgp:
              peers: [{address: 192.168.2.1, asn: 65002}]
              gracefulRestart: 0s
      - name: plain
        routing: bgp
      - name: lan
        routing: l2
`

func TestBGPEffectiveConfig(t *testing.T) {
	top := mustLoad(t, []byte(bgpTree))
	tr := top.Trees[0]
	zone := &BGPConfig{ASN: 64601, GracefulRestartSeconds: 120, From: "zone", Peers: []BGPPeer{
		{Address: netip.MustParseAddr("192.168.1.1"), ASN: 65001, Port: 179},
		{Address: netip.MustParseAddr("fd00::1"), ASN: 4200000001, Password: "s3cret", Port: 1179},
	}}
	tests := []struct {
		path string
		want *BGPConfig
	}{
		{"zone", zone},
		{"zone/rack-1", zone}, // inherited whole
		{"zone/rack-2", &BGPConfig{ASN: DefaultBGPASN, From: "zone/rack-2", Peers: []BGPPeer{
			{Address: netip.MustParseAddr("192.168.2.1"), ASN: 65002, Port: 179}}}}, // its own block replaces the zone's
		{"plain", &BGPConfig{ASN: DefaultBGPASN, GracefulRestartSeconds: DefaultGracefulRestart}},
		{"lan", nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if d := cmp.Diff(tt.want, tr.Group(tt.path).BGP, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
				t.Errorf("effective bgp (-want +got):\n%s", d)
			}
		})
	}
}

func TestBGPValidation(t *testing.T) {
	group := func(body string) string {
		return oneNet + "topologies:\n  - networks: [a]\n    groups:\n      - name: g\n" + body
	}
	tests := []struct {
		name string
		file string
		want []want
	}{
		{"bgp block on an l2 group", group("        bgp: {asn: 64601}\n"),
			[]want{{"topologies[0].groups[0].bgp", "applies only to bgp groups; this group routes by l2"}}},
		{"asn 0", group("        routing: bgp\n        bgp: {asn: 0}\n"),
			[]want{{"topologies[0].groups[0].bgp.asn", "AS 0 is reserved"}}},
		{"asn too large", group("        routing: bgp\n        bgp: {asn: 4294967296}\n"),
			[]want{{"topologies[0].groups[0].bgp.asn", "4294967296 is not an AS number; use 1 to 4294967295"}}},
		{"asn negative", group("        routing: bgp\n        bgp: {asn: -5}\n"),
			[]want{{"topologies[0].groups[0].bgp.asn", "-5 is not an AS number"}}},
		{"asn as a string", group("        routing: bgp\n        bgp: {asn: \"64601\"}\n"),
			[]want{{"topologies[0].groups[0].bgp.asn", "want a whole number"}}},
		{"AS_TRANS", group("        routing: bgp\n        bgp: {asn: 23456}\n"),
			[]want{{"topologies[0].groups[0].bgp.asn", "AS_TRANS"}}},
		{"bad peer address", group("        routing: bgp\n        bgp: {peers: [{address: 192.168.1.300, asn: 65001}]}\n"),
			[]want{{"topologies[0].groups[0].bgp.peers[0].address", `"192.168.1.300" is not an IP address`}}},
		{"missing peer address and asn", group("        routing: bgp\n        bgp: {peers: [{password: x}]}\n"),
			[]want{{"topologies[0].groups[0].bgp.peers[0].address", "required"}, {"topologies[0].groups[0].bgp.peers[0].asn", "required"}}},
		{"peer asn too large", group("        routing: bgp\n        bgp: {peers: [{address: 192.168.1.1, asn: 4294967296}]}\n"),
			[]want{{"topologies[0].groups[0].bgp.peers[0].asn", "is not an AS number"}}},
		{"duplicate peers", group("        routing: bgp\n        bgp: {peers: [{address: 192.168.1.1, asn: 65001}, {address: 192.168.1.2, asn: 65001}, {address: 192.168.1.1, asn: 65003}]}\n"),
			[]want{{"topologies[0].groups[0].bgp.peers[2].address", "peer 192.168.1.1 is already listed at topologies[0].groups[0].bgp.peers[0]"}}},
		{"bad port", group("        routing: bgp\n        bgp: {peers: [{address: 192.168.1.1, asn: 65001, port: 70000}]}\n"),
			[]want{{"topologies[0].groups[0].bgp.peers[0].port", "70000 is not a TCP port"}}},
		{"password too long", group("        routing: bgp\n        bgp: {peers: [{address: 192.168.1.1, asn: 65001, password: " + strings.Repeat("x", 81) + "}]}\n"),
			[]want{{"topologies[0].groups[0].bgp.peers[0].password", "at most 80"}}},
		{"bad graceful restart", group("        routing: bgp\n        bgp: {gracefulRestart: 1.5s}\n"),
			[]want{{"topologies[0].groups[0].bgp.gracefulRestart", `"1.5s"`}}},
		{"graceful restart too long", group("        routing: bgp\n        bgp: {gracefulRestart: 2h}\n"),
			[]want{{"topologies[0].groups[0].bgp.gracefulRestart", "longer than the 4095s"}}},
		{"unknown bgp field", group("        routing: bgp\n        bgp: {as: 5}\n"),
			[]want{{"topologies[0].groups[0].bgp.as", "unknown field; known fields here: asn, gracefulRestart, peers"}}},
		{"every problem at once", group("        bgp: {asn: 0, peers: [{address: x, asn: 0}]}\n"),
			[]want{
				{"topologies[0].groups[0].bgp", "applies only to bgp groups"},
				{"topologies[0].groups[0].bgp.asn", "AS 0 is reserved"},
				{"topologies[0].groups[0].bgp.peers[0].address", `"x" is not an IP address`},
				{"topologies[0].groups[0].bgp.peers[0].asn", "required"},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load([]byte(tt.file))
			if err == nil {
				t.Fatal("loads; want errors")
			}
			got := fieldErrors(t, err)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(got), len(tt.want), err)
			}
			for i, w := range tt.want {
				if got[i].Path != w.path || !strings.Contains(got[i].Msg, w.phrase) {
					t.Errorf("error %d = %s: %s; want %s: …%s…", i, got[i].Path, got[i].Msg, w.path, w.phrase)
				}
			}
		})
	}
}

func TestParseSeconds(t *testing.T) {
	good := map[string]int{"0": 0, "0s": 0, "120s": 120, "2m": 120, "1m30s": 90, "1h": 3600, "1h1m1s": 3661}
	for s, want := range good {
		if got, err := parseSeconds(s); err != nil || got != want {
			t.Errorf("parseSeconds(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "s", "12", "1.5s", "10ms", "-1s", "1s1m", "1m1m", "99999999999s", "1d"} {
		if got, err := parseSeconds(s); err == nil {
			t.Errorf("parseSeconds(%q) = %d; want an error", s, got)
		}
	}
}
