package server

import (
	"net/http"
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
