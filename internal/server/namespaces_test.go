package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/ipam"
)

// TestNamespaceNetworks: a namespace's own default network is set and
// cleared by an admin, decides where its endpoints go, reaches the agents'
// snapshot, survives a reload from the store, and blocks a topology change
// that would remove its network.
func TestNamespaceNetworks(t *testing.T) {
	st := openBolt(t, t.TempDir())
	s := newTestServer(t, st)
	s.setup()
	for _, tt := range []struct {
		token, ns string
		body      map[string]any
		code      int
		field     string
	}{
		{n1Token, "openstack", map[string]any{"network": "vms"}, http.StatusForbidden, ""},
		{adminToken, "web", map[string]any{"network": "vms"}, http.StatusBadRequest, ""}, // vms admits only openstack
		{adminToken, "web", map[string]any{"network": "nonet"}, http.StatusNotFound, ""},
		{adminToken, "web", map[string]any{}, http.StatusBadRequest, "network"},
		{adminToken, "bad..name%0A", map[string]any{"network": "pods"}, http.StatusBadRequest, "namespace"},
	} {
		code, body := s.call(tt.token, "PUT", "/v1/namespaces/"+tt.ns, tt.body)
		if code != tt.code || (tt.field != "" && body["field"] != tt.field) {
			t.Errorf("PUT %s %v: %d %v, want %d field %q", tt.ns, tt.body, code, body, tt.code, tt.field)
		}
	}
	s.must(adminToken, "PUT", "/v1/namespaces/openstack", map[string]any{"network": "vms"}, 200)
	// openstack may also use pods; its endpoints now go to vms by default.
	ep := s.must(adminToken, "POST", "/v1/endpoints", map[string]any{"id": "port-1", "host": "n1", "namespace": "openstack"}, 201)
	if got := ep["endpoint"].(map[string]any)["network"]; got != "vms" {
		t.Errorf("an openstack endpoint went to %v, want its namespace's default vms", got)
	}
	if body := s.must(n1Token, "GET", "/v1/namespaces", nil, 200); body["namespaces"].(map[string]any)["openstack"] != "vms" {
		t.Errorf("GET /v1/namespaces: %v", body)
	}
	if body := s.must(n1Token, "GET", "/v1/snapshot", nil, 200); body["namespaces"].(map[string]any)["openstack"] != "vms" {
		t.Errorf("the snapshot lacks the namespace's network: %v", body["namespaces"])
	}
	// A fresh state from the store holds it.
	fresh, err := NewState(context.Background(), st, s.state.log)
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.View(context.Background(), func(al *ipam.Allocator, _ *topologyRecord) error {
		if al.NamespaceNetwork("openstack") != "vms" {
			t.Errorf("reloaded: %v", al.NamespaceNetworks())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Removing vms from the topology would orphan the namespace's default
	// (and port-1): refused, naming both.
	s.must(adminToken, "DELETE", "/v1/endpoints/port-1", nil, 200)
	without := strings.Replace(testTopology, "  - {name: vms, cidr: 10.1.0.0/16, blockSize: 28, namespaces: [openstack]}\n", "", 1)
	without = strings.Replace(without, "networks: [pods, vms]", "networks: [pods]", 1)
	code, body := s.call(adminToken, "POST", "/v1/topology", map[string]any{"topology": without})
	if code != http.StatusConflict || !strings.Contains(fmt.Sprint(body), "namespace-network-orphaned") {
		t.Errorf("topology without vms: %d %v", code, body)
	}
	s.must(adminToken, "DELETE", "/v1/namespaces/openstack", nil, 200)
	// (port-1's emptied block stays as the host's spare: give it back too.)
	s.must(adminToken, "DELETE", "/v1/hosts/n1/blocks/vms/10.1.0.0/28", nil, 200)
	if body := s.must(n1Token, "GET", "/v1/namespaces", nil, 200); len(body["namespaces"].(map[string]any)) != 0 {
		t.Errorf("after clearing: %v", body)
	}
	s.must(adminToken, "POST", "/v1/topology", map[string]any{"topology": without}, 200)
}
