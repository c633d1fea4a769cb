package vpc

import (
	"net/netip"
	"testing"

	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/topology"
)

// TestDesiredDualStackBudgets: a table in a cluster with an IPv4 and an
// IPv6 network plans each family within its own budget: IPv6 routes (to
// the same instances) under ipv6Budget, IPv4 under budget, and a family's
// plan never spends the other's routes.
func TestDesiredDualStackBudgets(t *testing.T) {
	s := zoneSnap("a", "b", "c")
	n6 := Network{Name: "pods6", CIDR: pfx("fd00:30::/112")}
	n6.Input.Groups = []routing.Group{{Path: "z1", Mode: topology.ModeVPC, Prefixes: []netip.Prefix{pfx("fd00:30::/120")}}}
	for i, h := range []string{"a", "b", "c"} {
		b := netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x30, 15: byte(16 * i)}), 124)
		n6.Input.Hosts = append(n6.Input.Hosts, routing.Host{Name: h, Group: "z1", Mode: topology.ModeVPC, Blocks: []netip.Prefix{b}})
	}
	s.Networks = append(s.Networks, n6)

	for _, c := range []struct {
		b4, b6       int
		want4, want6 int
	}{
		{10, 10, 3, 3}, // both fit directly: one route per host's block
		{10, 1, 3, 1},  // IPv6 squeezed to the zone's aggregate, IPv4 untouched
		{1, 10, 1, 3},
	} {
		d := Desired(TableSpec{ID: "rtb-1", Budget4: c.b4, Budget6: c.b6}, s, nil)
		got := map[int]FamilyPlan{}
		for _, fp := range d.Families {
			got[fp.Family] = fp
		}
		if fp := got[4]; !fp.Fits || len(fp.Routes) != c.want4 || fp.Budget != c.b4 {
			t.Errorf("budgets %d/%d: IPv4 plan %+v, want %d routes within %d", c.b4, c.b6, fp, c.want4, c.b4)
		}
		fp := got[6]
		if !fp.Fits || len(fp.Routes) != c.want6 || fp.Budget != c.b6 {
			t.Errorf("budgets %d/%d: IPv6 plan %+v, want %d routes within %d", c.b4, c.b6, fp, c.want6, c.b6)
		}
		for _, r := range fp.Routes {
			if !r.Dst.Addr().Is6() || r.Instance == "" {
				t.Errorf("IPv6 plan route %+v: want an IPv6 destination to an instance", r)
			}
		}
	}
}
