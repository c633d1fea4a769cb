package ipam

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/topology"
)

// TestCheckFindsCorruption loads inconsistent state the way a store could
// hold it (through Apply, which checks only what one change can see) and
// expects Check to explain each problem.
func TestCheckFindsCorruption(t *testing.T) {
	topo, err := topology.Load([]byte(`
networks: [{name: pods, cidr: 10.0.0.0/16, blockSize: 28}]
reservations: [10.0.255.0/24]
topologies: [{networks: [pods], groups: [{name: a, groups: [{name: x}]}, {name: b}]}]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		changes []Change
		kind    string
	}{
		{"outside network", []Change{{Kind: GroupPrefixAdded, Network: "pods", Group: "b", Prefix: netip.MustParsePrefix("10.1.0.0/24")}}, "prefix-outside-network"},
		{"reservation", []Change{{Kind: GroupPrefixAdded, Network: "pods", Group: "b", Prefix: netip.MustParsePrefix("10.0.255.0/25")}}, "prefix-overlaps-reservation"},
		{"siblings overlap", []Change{{Kind: GroupPrefixAdded, Network: "pods", Group: "b", Prefix: netip.MustParsePrefix("10.0.0.0/24")}}, "prefixes-overlap"},
		{"outside parent", []Change{{Kind: GroupPrefixAdded, Network: "pods", Group: "a/x", Prefix: netip.MustParsePrefix("10.0.200.0/24")}}, "prefix-outside-parent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _, err := New(topo, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if f := a.Check(); len(f) != 0 {
				t.Fatalf("fresh allocator has findings: %+v", f)
			}
			if err := a.Apply(tc.changes); err != nil {
				t.Fatal(err)
			}
			f := a.Check()
			if len(f) == 0 || f[0].Kind != tc.kind || !strings.Contains(f[0].Detail, ":") {
				t.Fatalf("Check = %+v, want a %s finding with an explanation", f, tc.kind)
			}
		})
	}
}
