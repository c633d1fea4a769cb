package server

import (
	"fmt"
	"strings"
	"testing"
)

// TestRegisterKeepsLabels: a node that registers without labels keeps the
// labels an admin (or the Node controller) gave its host; with other
// labels or another IP it is refused (it may only fill in a missing IP),
// and an unregistered host without labels fits no group.
func TestRegisterKeepsLabels(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	s.setup()
	out := s.must(n1Token, "PUT", "/v1/hosts/n1", map[string]any{"ip": "192.0.2.1"}, 200)
	host := out["host"].(map[string]any)
	if l := host["labels"].(map[string]any); l["rack"] != "1" || len(l) != 1 {
		t.Fatalf("labels after a registration without labels: %v", l)
	}
	if g := host["groups"].(map[string]any); g["pods"] != "rack-1" {
		t.Fatalf("groups: %v", g)
	}
	s.must(n1Token, "PUT", "/v1/hosts/n1", map[string]any{"ip": "192.0.2.1", "labels": map[string]string{"rack": "2"}}, 403)
	s.must(n1Token, "PUT", "/v1/hosts/n1", map[string]any{"ip": "192.0.2.9"}, 403)
	s.must(adminToken, "PUT", "/v1/hosts/n9", map[string]any{"ip": "192.0.2.9"}, 400)

	// A host registered without an address (a Node before its kubelet
	// reported one): its node may fill it in, once.
	s.must(adminToken, "PUT", "/v1/hosts/n1", map[string]any{"labels": map[string]string{"rack": "1"}}, 200)
	out = s.must(n1Token, "PUT", "/v1/hosts/n1", map[string]any{"ip": "192.0.2.7"}, 200)
	if ip := out["host"].(map[string]any)["ip"]; ip != "192.0.2.7" {
		t.Fatalf("IP after the node filled it in: %v", ip)
	}
	s.must(n1Token, "PUT", "/v1/hosts/n1", map[string]any{"ip": "192.0.2.8"}, 403)
}

// TestRegisterIP6: a node fills in its host's IPv6 address, keeps it when
// it registers without one, may not change it, and an ip6 that is not
// IPv6 is refused naming the field; an admin may change it.
func TestRegisterIP6(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	s.setup()
	out := s.must(n1Token, "PUT", "/v1/hosts/n1", map[string]any{"ip": "192.0.2.1", "ip6": "fd00:ff::1"}, 200)
	if ip6 := out["host"].(map[string]any)["ip6"]; ip6 != "fd00:ff::1" {
		t.Fatalf("ip6 after registration: %v", ip6)
	}
	out = s.must(n1Token, "PUT", "/v1/hosts/n1", map[string]any{"ip": "192.0.2.1"}, 200)
	if ip6 := out["host"].(map[string]any)["ip6"]; ip6 != "fd00:ff::1" {
		t.Fatalf("ip6 after a registration without it: %v, want it kept", ip6)
	}
	s.must(n1Token, "PUT", "/v1/hosts/n1", map[string]any{"ip": "192.0.2.1", "ip6": "fd00:ff::2"}, 403)
	bad := s.must(adminToken, "PUT", "/v1/hosts/n1", map[string]any{"ip": "192.0.2.1", "ip6": "192.0.2.9"}, 400)
	if !strings.Contains(fmt.Sprint(bad), "ip6") {
		t.Errorf("refusal of an IPv4 ip6: %v, want it to name ip6", bad)
	}
	out = s.must(adminToken, "PUT", "/v1/hosts/n1", map[string]any{"ip": "192.0.2.1", "ip6": "fd00:ff::2", "labels": map[string]string{"rack": "1"}}, 200)
	if ip6 := out["host"].(map[string]any)["ip6"]; ip6 != "fd00:ff::2" {
		t.Fatalf("ip6 after an admin changed it: %v", ip6)
	}
}
