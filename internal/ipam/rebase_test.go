package ipam

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/topology"
)

func mustTopology(t *testing.T, y string) *topology.Topology {
	t.Helper()
	topo, err := topology.Load([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

const rebaseBase = `
networks: [{name: pods, cidr: 10.0.0.0/16, blockSize: 28}]
topologies: [{networks: [pods], groups: [
  {name: a, assignment: {matchLabels: {zone: a}}},
  {name: b, assignment: {matchLabels: {zone: b}}}]}]
`

func liveAllocator(t *testing.T) *Allocator {
	t.Helper()
	a, _, err := New(mustTopology(t, rebaseBase), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return liveAllocatorFrom(t, a)
}

func TestRebaseKeepsLiveState(t *testing.T) {
	old := liveAllocator(t)
	// A third group added: live blocks stay in a and b.
	added := strings.Replace(rebaseBase, "{name: b, assignment: {matchLabels: {zone: b}}}]", "{name: b, assignment: {matchLabels: {zone: b}}}, {name: c, assignment: {matchLabels: {zone: c}}}]", 1)
	a, conflicts, err := Rebase(old, mustTopology(t, added), Options{})
	if err != nil || len(conflicts) > 0 {
		t.Fatalf("Rebase: %v %+v", err, conflicts)
	}
	for _, e := range old.Endpoints() {
		got, ok := a.Endpoint(e.ID)
		if !ok || got.Addr != e.Addr {
			t.Fatalf("endpoint %s: %v %v, want %s", e.ID, got, ok, e.Addr)
		}
	}
	if len(a.Blocks("pods")) != len(old.Blocks("pods")) {
		t.Fatalf("blocks %d, want %d", len(a.Blocks("pods")), len(old.Blocks("pods")))
	}
	// The new group can take hosts and addresses that collide with nothing.
	if _, err := a.AddHost(HostSpec{Name: "hc", Labels: map[string]string{"zone": "c"}}); err != nil {
		t.Fatal(err)
	}
	ep, _, err := a.AllocateEndpoint(EndpointRequest{ID: "c0", Host: "hc"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range old.Endpoints() {
		if e.Addr == ep.Addr {
			t.Fatalf("new group's endpoint %s collides with %s", ep.Addr, e.ID)
		}
	}
	if f := a.Check(); len(f) > 0 {
		t.Fatalf("Check: %+v", f)
	}
}

func TestRebaseRejectsOrphans(t *testing.T) {
	old := liveAllocator(t)
	for _, tc := range []struct{ name, topo, kind string }{
		{"group with live blocks removed", `
networks: [{name: pods, cidr: 10.0.0.0/16, blockSize: 28}]
topologies: [{networks: [pods], groups: [{name: a, assignment: {matchLabels: {zone: a}}}]}]
`, "host-unplaced"},
		{"network removed", `
networks: [{name: other, cidr: 10.9.0.0/16, blockSize: 28}]
topologies: [{networks: [other], groups: [{name: a}]}]
`, "network-removed"},
		{"network shrunk under live blocks", strings.Replace(rebaseBase, "10.0.0.0/16", "10.0.0.0/24", 1), "block-orphaned"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, conflicts, err := Rebase(old, mustTopology(t, tc.topo), Options{})
			if err != nil {
				t.Fatal(err)
			}
			if a != nil || len(conflicts) == 0 {
				t.Fatalf("want conflicts, got allocator %v", a != nil)
			}
			found := false
			for _, c := range conflicts {
				found = found || c.Kind == tc.kind
				if c.Detail == "" {
					t.Errorf("conflict without explanation: %+v", c)
				}
			}
			if !found {
				t.Errorf("no %s conflict in %+v", tc.kind, conflicts)
			}
		})
	}
}

// TestRebaseShrinksAroundLiveBlocks: a network may shrink, and an empty
// group may move, as long as every live block keeps its group.
func TestRebaseShrinksAroundLiveBlocks(t *testing.T) {
	withC := strings.Replace(rebaseBase, "{name: b, assignment: {matchLabels: {zone: b}}}]", "{name: b, assignment: {matchLabels: {zone: b}}}, {name: c, assignment: {matchLabels: {zone: c}}}]", 1)
	old, _, err := New(mustTopology(t, withC), Options{})
	if err != nil {
		t.Fatal(err)
	}
	live := liveAllocatorFrom(t, old)
	shrunk := strings.Replace(withC, "10.0.0.0/16", "10.0.0.0/22", 1)
	a, conflicts, err := Rebase(live, mustTopology(t, shrunk), Options{})
	if err != nil || len(conflicts) > 0 {
		t.Fatalf("shrinking around live blocks: %v %+v", err, conflicts)
	}
	for _, e := range live.Endpoints() {
		if got, ok := a.Endpoint(e.ID); !ok || got.Addr != e.Addr {
			t.Fatalf("endpoint %s lost", e.ID)
		}
	}
	for path, ps := range a.GroupPrefixes("pods") {
		for _, p := range ps {
			if !netip.MustParsePrefix("10.0.0.0/22").Contains(p.Addr()) {
				t.Errorf("group %s keeps %s outside the shrunk network", path, p)
			}
		}
	}
	if f := a.Check(); len(f) > 0 {
		t.Fatalf("Check: %+v", f)
	}
}

// liveAllocatorFrom adds two hosts with 40 endpoints each to a.
func liveAllocatorFrom(t *testing.T, a *Allocator) *Allocator {
	t.Helper()
	for _, h := range []HostSpec{{Name: "ha", Labels: map[string]string{"zone": "a"}}, {Name: "hb", Labels: map[string]string{"zone": "b"}}} {
		if _, err := a.AddHost(h); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 40; i++ {
			if _, _, err := a.AllocateEndpoint(EndpointRequest{ID: fmt.Sprint(h.Name, i), Host: h.Name}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return a
}
