package kube

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/server"
)

// TestNodeEventsOnFullNetwork: a block claim the allocator refuses because
// the host's group is full becomes one Warning Event on the host's Node,
// however often the agent retries within a minute.
func TestNodeEventsOnFullNetwork(t *testing.T) {
	_, cs := testCluster(t)
	ctx := testCtx(t)
	state := testState(t)
	// One /28 for the whole network, static: the second claim finds no room.
	if _, err := state.ApplyTopology(ctx, api.TopologyRequest{Mode: "static", Topology: `
networks:
  - {name: tiny, cidr: 10.9.0.0/28, blockSize: 28, default: true}
topologies:
  - networks: [tiny]
    groups:
      - {name: all}
`}); err != nil {
		t.Fatal(err)
	}
	node := createNode(t, ctx, cs, "n1", "192.0.2.1", nil)
	if _, err := state.RegisterHost(ctx, HostSpec(node)); err != nil {
		t.Fatal(err)
	}
	hs := serveAPIWith(t, state, NewNodeEvents(ctx, cs))
	claim := func() int {
		t.Helper()
		req, _ := http.NewRequest("POST", hs+"/v1/hosts/n1/blocks", strings.NewReader(`{"network":"tiny"}`))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := claim(); code != http.StatusCreated {
		t.Fatalf("first claim: %d", code)
	}
	for range 3 {
		if code := claim(); code != http.StatusConflict {
			t.Fatalf("claim in a full network: %d, want 409", code)
		}
	}
	if msg := eventOn(t, ctx, cs, "n1", ReasonNetworkFull); !strings.Contains(msg, "network tiny") {
		t.Errorf("event message %q", msg)
	}
	evs, err := cs.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Node,involvedObject.name=n1,reason=" + ReasonNetworkFull})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(evs.Items); n != 1 || evs.Items[0].Count > 1 {
		t.Errorf("%d events (count %d) for 3 refusals within a minute, want one", n, evs.Items[0].Count)
	}
}

func serveAPIWith(t *testing.T, state *server.State, f server.AllocationFailures) string {
	t.Helper()
	admin, err := server.ParseTokens([]byte(adminToken + " admin ops\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := server.NewAPI(state, admin, quietLog())
	h.SetAllocationFailures(f)
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs.URL
}
