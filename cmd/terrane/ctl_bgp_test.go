package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/topology"
)

func TestBGPTable(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	r := &api.BGPReport{Hosts: []api.BGPHostReport{
		{Host: "n1", Groups: map[string]string{"pods": "fabric/rack-1"}, Reported: true, Status: &api.BGPStatus{
			Host: "n1", RouterID: netip.MustParseAddr("192.168.10.11"), ASN: 64601, GracefulRestartSeconds: 120,
			Peers: []api.BGPPeerStatus{
				{Address: netip.MustParseAddr("192.168.1.1"), ASN: 65001, State: "established", Since: now.Add(-4 * time.Minute), PrefixesSent: 2},
				{Address: netip.MustParseAddr("192.168.1.2"), ASN: 65001, State: "active", LastError: "connection refused"},
			},
			Announced:  []netip.Prefix{netip.MustParsePrefix("10.10.0.0/28"), netip.MustParsePrefix("10.10.0.32/27")},
			ReportedAt: now.Add(-3 * time.Second),
		}},
		{Host: "n2", Groups: map[string]string{"pods": "fabric/rack-2"}},
	}}
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	bgpTable(tw, r, now)
	tw.Flush()
	got := b.String()
	for _, want := range []string{
		"n1    64601  192.168.10.11  pods:fabric/rack-1  3s ago\n",
		"n2    -      -              pods:fabric/rack-2  never: is its agent running",
		"\nn1\n  PEER         AS     STATE                        SINCE  SENT/RECEIVED\n",
		"  192.168.1.1  65001  established                  4m0s   2/0\n",
		"  192.168.1.2  65001  active (connection refused)  -      0/0\n",
		"  announces 10.10.0.0/28, 10.10.0.32/27\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

func TestParseBGPPeers(t *testing.T) {
	got, err := parseBGPPeers([]string{"192.168.1.1:65001", "[fd00::1]:4200000001"})
	want := []topology.BGPPeer{{Address: netip.MustParseAddr("192.168.1.1"), ASN: 65001}, {Address: netip.MustParseAddr("fd00::1"), ASN: 4200000001}}
	if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("parseBGPPeers = %+v, %v; want %+v", got, err, want)
	}
	for _, bad := range []string{"192.168.1.1", "192.168.1.1:0", "192.168.1.1:4294967296", "x:1", "192.168.1.1:a"} {
		if _, err := parseBGPPeers([]string{bad}); err == nil {
			t.Errorf("parseBGPPeers(%q) succeeded", bad)
		}
	}
	if _, err := parseBGPPeers([]string{"10.0.0.1:1", "10.0.0.1:2"}); err == nil {
		t.Error("a peer given twice is accepted")
	}
}
