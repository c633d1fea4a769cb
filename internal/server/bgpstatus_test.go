package server

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// TestBGPStatusOutsideState: a node reports its own BGP status (not
// another host's); the report is readable at GET /v1/bgp, and — kept
// outside v1/ — neither moves the state's revision nor makes the next
// allocation reload it.
func TestBGPStatusOutsideState(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	if code, _ := s.call(adminToken, "POST", "/v1/topology", map[string]any{"topology": testTopology}); code != http.StatusOK {
		t.Fatal("apply topology")
	}
	if code, _ := s.call(n1Token, "PUT", "/v1/hosts/n1", map[string]any{"ip": "192.0.2.1", "labels": map[string]string{"rack": "1"}}); code != http.StatusOK {
		t.Fatal("register n1")
	}
	if code, _ := s.call(n1Token, "PUT", "/v1/hosts/n2/bgp", map[string]any{}); code != http.StatusForbidden {
		t.Errorf("a node reporting for another host: %d, want 403", code)
	}
	before, reloads := s.state.Stats().Revision, s.state.Stats().Reloads
	report := map[string]any{"asn": 64601, "peers": []map[string]any{{"address": "192.0.2.254", "asn": 65001, "state": "established"}}}
	if code, body := s.call(n1Token, "PUT", "/v1/hosts/n1/bgp", report); code != http.StatusOK {
		t.Fatalf("report: %d %v", code, body)
	}
	if got := s.state.Stats().Revision; got != before {
		t.Errorf("state revision moved from %d to %d on a BGP report", before, got)
	}
	if code, _ := s.call(adminToken, "PUT", "/v1/hosts/n3", map[string]any{"ip": "192.0.2.3", "labels": map[string]string{"rack": "1"}}); code != http.StatusOK {
		t.Fatal("register n3")
	}
	if got := s.state.Stats().Reloads; got != reloads {
		t.Errorf("the state was reloaded %d times after a BGP report and a registration, want 0", got-reloads)
	}
	code, body := s.call(adminToken, "GET", "/v1/bgp", nil)
	if code != http.StatusOK {
		t.Fatalf("GET /v1/bgp: %d %v", code, body)
	}
	found := false
	for _, h := range body["hosts"].([]any) {
		hm := h.(map[string]any)
		if hm["host"] == "n1" && hm["reported"] == true {
			found = true
		}
	}
	if !found {
		t.Errorf("GET /v1/bgp does not show n1's report: %v", body)
	}
}

const bgpTestTopology = `
networks:
  - {name: pods, cidr: 10.10.0.0/16, blockSize: 28, default: true}
topologies:
  - networks: [pods]
    groups:
      - name: fabric
        routing: bgp
        bgp: {asn: 64601, peers: [{address: 192.168.1.1, asn: 65001}]}
        groups:
          - {name: rack-1, advertise: blocks, assignment: {matchLabels: {rack: "1"}}}
          - {name: rack-2, advertise: group, assignment: {matchLabels: {rack: "2"}}}
      - {name: rack-3, routing: l2, assignment: {matchLabels: {rack: "3"}}}
`

// TestBGPStatusRefusesForeignAnnouncements: a report may announce only
// what the routing core says the host announces (its blocks merged, or its
// group's prefixes) or a part of it; a host in no bgp group announces
// nothing. Refusals are 400 at field announced and store nothing.
func TestBGPStatusRefusesForeignAnnouncements(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	s.must(adminToken, "POST", "/v1/topology", map[string]any{"topology": bgpTestTopology}, 200)
	for host, rack := range map[string]string{"b1": "1", "b2": "1", "g1": "2", "l1": "3"} {
		s.must(adminToken, "PUT", "/v1/hosts/"+host, map[string]any{"labels": map[string]string{"rack": rack}}, 200)
	}
	block := func(host string) string {
		out := s.must(adminToken, "POST", "/v1/hosts/"+host+"/blocks", map[string]any{"network": "pods"}, 201)
		return out["block"].(string)
	}
	b1, b2 := block("b1"), block("b2")
	block("g1")
	snap := s.must(adminToken, "GET", "/v1/snapshot", nil, 200)
	rack2 := snap["groups"].(map[string]any)["pods"].(map[string]any)["fabric/rack-2"].([]any)[0].(string)
	b1Half := netip.MustParsePrefix(b1)
	b1Half = netip.PrefixFrom(b1Half.Addr(), b1Half.Bits()+1)

	report := func(host string, announced ...string) (int, map[string]any) {
		return s.call(adminToken, "PUT", "/v1/hosts/"+host+"/bgp", map[string]any{"announced": announced})
	}
	for _, tc := range []struct {
		host      string
		announced []string
		status    int
		want      string
	}{
		{"b1", []string{b1}, 200, ""},
		{"b1", []string{b1Half.String()}, 200, ""}, // trails the state: inside its block
		{"g1", []string{rack2}, 200, ""},
		{"l1", nil, 200, ""}, // nothing announced: a stopped speaker's report
		{"b1", []string{b1, b2}, 400, "announces " + b2},
		{"b1", []string{"0.0.0.0/0"}, 400, "announces 0.0.0.0/0"},
		{"b1", []string{rack2}, 400, "not inside"},
		{"g1", []string{"10.10.0.0/16"}, 400, "not inside"},
		{"l1", []string{b1}, 400, "no group that routes by bgp"},
	} {
		t.Run(fmt.Sprint(tc.host, tc.announced), func(t *testing.T) {
			code, body := report(tc.host, tc.announced...)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %v", code, tc.status, body)
			}
			if tc.status == 400 && (body["field"] != "announced" || !strings.Contains(fmt.Sprint(body["error"]), tc.want)) {
				t.Fatalf("error %v, want field announced and %q", body, tc.want)
			}
		})
	}
	// The refused reports stored nothing: b1's last accepted report stands.
	bgp := s.must(adminToken, "GET", "/v1/bgp", nil, 200)
	for _, h := range bgp["hosts"].([]any) {
		hm := h.(map[string]any)
		if hm["host"] == "b1" {
			if got := fmt.Sprint(hm["status"].(map[string]any)["announced"]); got != "["+b1Half.String()+"]" {
				t.Errorf("b1 announces %s in GET /v1/bgp, want [%s]", got, b1Half)
			}
		}
	}
}
