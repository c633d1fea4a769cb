package vpc

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/topology"
)

// genNetwork builds a valid vpc network: zones of racks, hosts with /26
// blocks inside their rack's prefix and endpoints inside their blocks.
// base is the network's /16 (IPv4) or /112-sized IPv6 prefix scaled alike.
func genNetwork(rng *rand.Rand, name string, cidr netip.Prefix, zones, racks int) Network {
	n := Network{Name: name, CIDR: cidr}
	bits := cidr.Addr().BitLen()
	zoneLen, rackLen, blockLen := cidr.Bits()+2, cidr.Bits()+5, bits-6
	top := routing.Group{Path: "region", Mode: topology.ModeVPC, Prefixes: []netip.Prefix{cidr}}
	n.Input.Groups = append(n.Input.Groups, top)
	for z := range zones {
		zp, _ := netx.Nth(cidr, zoneLen, uint64(z))
		zpath := fmt.Sprintf("region/z%d", z)
		n.Input.Groups = append(n.Input.Groups, routing.Group{Path: zpath, Parent: "region", Mode: topology.ModeVPC, Prefixes: []netip.Prefix{zp}})
		for r := range racks {
			rp, _ := netx.Nth(zp, rackLen, uint64(r))
			rpath := fmt.Sprintf("%s/r%d", zpath, r)
			n.Input.Groups = append(n.Input.Groups, routing.Group{Path: rpath, Parent: zpath, Mode: topology.ModeVPC, Prefixes: []netip.Prefix{rp}})
			free := rng.Perm(1 << (blockLen - rackLen))
			for h := range rng.IntN(4) {
				host := routing.Host{Name: fmt.Sprintf("z%d-r%d-h%d", z, r, h), Group: rpath, Mode: topology.ModeVPC}
				for range rng.IntN(4) {
					if len(free) == 0 {
						break
					}
					b, _ := netx.Nth(rp, blockLen, uint64(free[0]))
					free = free[1:]
					host.Blocks = append(host.Blocks, b)
					for range rng.IntN(3) {
						host.Endpoints = append(host.Endpoints, netx.AddOffset(b.Addr(), uint64(rng.IntN(64)), 0))
					}
				}
				n.Input.Hosts = append(n.Input.Hosts, host)
			}
		}
	}
	return n
}

type propCase struct {
	snap   Snapshot
	spec   TableSpec
	actual []CloudRoute
}

func genCase(rng *rand.Rand) propCase {
	var c propCase
	zones, racks := 1+rng.IntN(3), 1+rng.IntN(3)
	c.snap.Networks = append(c.snap.Networks, genNetwork(rng, "pods", netip.MustParsePrefix("10.30.0.0/16"), zones, racks))
	if rng.IntN(3) == 0 {
		c.snap.Networks = append(c.snap.Networks, genNetwork(rng, "vms", netip.MustParsePrefix("10.40.0.0/16"), zones, racks))
	}
	if rng.IntN(3) == 0 {
		c.snap.Networks = append(c.snap.Networks, genNetwork(rng, "pods6", netip.MustParsePrefix("fd00:30::/112"), zones, racks))
	}
	c.snap.Instances = map[string]string{}
	if rng.IntN(2) == 0 {
		c.snap.Healthy = map[string]bool{}
	}
	for _, n := range c.snap.Networks {
		for _, h := range n.Input.Hosts {
			if rng.IntN(10) > 0 {
				c.snap.Instances[h.Name] = "i-" + h.Name
			}
			if c.snap.Healthy != nil && rng.IntN(3) > 0 {
				c.snap.Healthy[h.Name] = true
			}
		}
	}
	c.spec = TableSpec{ID: "rtb-1", Budget4: 1 + rng.IntN(30), Budget6: 1 + rng.IntN(30)}
	if rng.IntN(2) == 0 {
		for z := range zones {
			if rng.IntN(2) == 0 {
				c.spec.Groups = append(c.spec.Groups, fmt.Sprintf("region/z%d", z))
			}
		}
	}
	// A table that is not empty: the VPC's own routes, someone else's,
	// and stale routes of ours.
	c.actual = []CloudRoute{
		{Dst: netip.MustParsePrefix("172.31.0.0/16"), Target: "local", Origin: "CreateRouteTable"},
		{Dst: netip.MustParsePrefix("0.0.0.0/0"), Target: "igw-1", Origin: OriginCreateRoute},
		{Dst: netip.MustParsePrefix("10.0.0.0/8"), Target: "pcx-1", Origin: OriginCreateRoute},
	}
	for range rng.IntN(12) {
		n := c.snap.Networks[rng.IntN(len(c.snap.Networks))]
		p, _ := netx.Nth(n.CIDR, n.CIDR.Bits()+4+rng.IntN(6), uint64(rng.IntN(16)))
		r := CloudRoute{Dst: p, Instance: fmt.Sprintf("i-stale%d", rng.IntN(4)), Origin: OriginCreateRoute, Blackhole: rng.IntN(5) == 0}
		if !slices.ContainsFunc(c.actual, func(a CloudRoute) bool { return a.Dst == p }) {
			c.actual = append(c.actual, r)
		}
	}
	return c
}

// apply plays ops on a table, checking each call is valid and that no
// family's own routes exceed max(budget, count before).
func apply(t *testing.T, c propCase, plan TablePlan, ops []Op) []CloudRoute {
	t.Helper()
	table := map[netip.Prefix]CloudRoute{}
	counts := map[int]int{}
	for _, r := range c.actual {
		table[r.Dst] = r
		if Owned(r, plan.Networks) {
			counts[family(r.Dst)]++
		}
	}
	ceiling := map[int]int{4: max(c.spec.Budget4, counts[4]), 6: max(c.spec.Budget6, counts[6])}
	for _, op := range ops {
		old, exists := table[op.Dst]
		if exists && !Owned(old, plan.Networks) {
			t.Fatalf("%v touches a route that is not Terrane's: %+v", op, old)
		}
		switch op.Kind {
		case OpCreate:
			if exists {
				t.Fatalf("%v: the route exists", op)
			}
			table[op.Dst] = CloudRoute{Dst: op.Dst, Instance: op.Instance, Origin: OriginCreateRoute}
			counts[family(op.Dst)]++
		case OpReplace:
			if !exists {
				t.Fatalf("%v: no such route", op)
			}
			table[op.Dst] = CloudRoute{Dst: op.Dst, Instance: op.Instance, Origin: OriginCreateRoute}
		case OpDelete:
			if !exists {
				t.Fatalf("%v: no such route", op)
			}
			delete(table, op.Dst)
			counts[family(op.Dst)]--
		}
		if f := family(op.Dst); counts[f] > ceiling[f] {
			t.Fatalf("after %v the table holds %d IPv%d routes, over max(budget, before) = %d", op, counts[f], f, ceiling[f])
		}
	}
	out := make([]CloudRoute, 0, len(table))
	for _, r := range table {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b CloudRoute) int { return netx.Less(a.Dst, b.Dst) })
	return out
}

func TestPropertyPlanAndDiff(t *testing.T) {
	for seed := range uint64(800) {
		rng := rand.New(rand.NewPCG(seed, 5))
		c := genCase(rng)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			checkCase(t, c)
		})
	}
}

func checkCase(t *testing.T, c propCase) {
	plan := Desired(c.spec, c.snap, c.actual)
	ops := Diff(plan, c.actual)
	after := apply(t, c, plan, ops)

	// Foreign routes are exactly as they were.
	for _, r := range c.actual {
		if !Owned(r, plan.Networks) && !slices.Contains(after, r) {
			t.Errorf("foreign route %+v was changed", r)
		}
	}
	// Planning again on the result changes nothing: targets are sticky.
	plan2 := Desired(c.spec, c.snap, after)
	if ops2 := Diff(plan2, after); len(ops2) > 0 {
		t.Errorf("second pass is not empty: %v", ops2)
	}
	for i, fp := range plan.Families {
		if !slices.Equal(fp.Routes, plan2.Families[i].Routes) {
			t.Errorf("IPv%d routes moved on the second pass:\n%v\n%v", fp.Family, fp.Routes, plan2.Families[i].Routes)
		}
	}
	// A table serving some groups routes only inside their prefixes.
	if len(c.spec.Groups) > 0 {
		var inside []netip.Prefix
		for _, n := range c.snap.Networks {
			for _, g := range n.Input.Groups {
				if slices.Contains(c.spec.Groups, g.Path) {
					inside = append(inside, g.Prefixes...)
				}
			}
		}
		inside = netx.Cover(inside...) // adjacent groups' space merged
		for _, fp := range plan.Families {
			for _, d := range fp.Routes {
				if !netx.CoveredBy(d.Dst, inside) {
					t.Errorf("route %s lies outside the table's groups %v", d.Dst, c.spec.Groups)
				}
			}
		}
	}
	for _, fp := range plan.Families {
		var own []CloudRoute
		for _, r := range after {
			if Owned(r, plan.Networks) && family(r.Dst) == fp.Family {
				own = append(own, r)
			}
		}
		if !fp.Fits {
			// Left as it was.
			var before int
			for _, r := range c.actual {
				if Owned(r, plan.Networks) && family(r.Dst) == fp.Family {
					before++
				}
			}
			if len(own) != before {
				t.Errorf("IPv%d over budget: the table went from %d to %d routes", fp.Family, before, len(own))
			}
			continue
		}
		if len(own) > fp.Budget {
			t.Errorf("IPv%d: %d routes over the budget of %d", fp.Family, len(own), fp.Budget)
		}
		if len(own) != len(fp.Routes) {
			t.Errorf("IPv%d: the table holds %d routes, the plan %d", fp.Family, len(own), len(fp.Routes))
		}
		if fp.Needed != len(fp.Routes)+fp.Uncovered {
			t.Errorf("IPv%d: needed %d != %d routes + %d uncovered", fp.Family, fp.Needed, len(fp.Routes), fp.Uncovered)
		}
		checkCoverage(t, c, fp, own)
		checkOracle(t, c, fp)
	}
}

// checkCoverage: every block and endpoint address of a table host with an
// instance has a route, and its longest match targets the owner, or a host
// of a group above the owner — healthy when one is.
func checkCoverage(t *testing.T, c propCase, fp FamilyPlan, own []CloudRoute) {
	in := tableInput(familyNets(c.snap, fp.Family), c.spec.Groups, map[string]bool{})
	m := tableMembers(in)
	byDst := map[netip.Prefix]DesiredRoute{}
	for _, d := range fp.Routes {
		byDst[d.Dst] = d
	}
	for _, h := range in.Hosts {
		if _, member := m.chain[h.Name]; !member || h.Group == "" {
			continue
		}
		if fp.Uncovered > 0 {
			return // some owner or group lacks an instance
		}
		addrs := slices.Clone(h.Endpoints)
		for _, b := range h.Blocks {
			addrs = append(addrs, b.Addr(), netx.AddOffset(b.Addr(), netx.Size(b)-1, 0))
		}
		for _, a := range addrs {
			var hits []CloudRoute // the longest match, as the cloud picks it
			for _, r := range own {
				if r.Dst.Contains(a) && (len(hits) == 0 || r.Dst.Bits() > hits[0].Dst.Bits()) {
					hits = []CloudRoute{r}
				}
			}
			if len(hits) != 1 {
				t.Fatalf("IPv%d: %s of host %s has no route", fp.Family, a, h.Name)
			}
			d := byDst[hits[0].Dst]
			if hits[0].Instance != c.snap.Instances[d.Host] {
				t.Fatalf("route %s targets %s, the plan says %s", d.Dst, hits[0].Instance, d.Host)
			}
			if d.Host == h.Name {
				continue
			}
			if d.Group == "" {
				t.Fatalf("direct route %s for %s of %s targets %s", d.Dst, a, h.Name, d.Host)
			}
			cands := m.under(rawGroup(in, d.Group, h))
			if !slices.Contains(cands, d.Host) {
				t.Fatalf("aggregate %s of group %s targets %s, not a host of the group (%v)", d.Dst, d.Group, d.Host, cands)
			}
			if c.snap.Healthy != nil && !c.snap.Healthy[d.Host] {
				for _, x := range cands {
					if c.snap.Healthy[x] && c.snap.Instances[x] != "" {
						t.Fatalf("aggregate %s targets unhealthy %s although %s is healthy", d.Dst, d.Host, x)
					}
				}
			}
		}
	}
}

// rawGroup finds the input's (possibly network-qualified) path of a group
// shown as display on host h's chain.
func rawGroup(in routing.Input, display string, h routing.Host) string {
	for p := h.Group; p != ""; {
		if displayGroup(p) == display {
			return p
		}
		i := slices.IndexFunc(in.Groups, func(g routing.Group) bool { return g.Path == p })
		if i < 0 {
			break
		}
		p = in.Groups[i].Parent
	}
	return display
}

func familyNets(s Snapshot, f int) []Network {
	var out []Network
	for _, n := range s.Networks {
		if n.CIDR.Addr().Is4() == (f == 4) {
			out = append(out, n)
		}
	}
	return out
}

// checkOracle: with one network of the family and no group filter, the
// table is exactly the routing core's table for the limit
// (routing.VPCTable: one route kept free where that fits).
func checkOracle(t *testing.T, c propCase, fp FamilyPlan) {
	nets := familyNets(c.snap, fp.Family)
	if len(nets) != 1 || len(c.spec.Groups) > 0 {
		return
	}
	want := routing.VPCTable(nets[0].Input, fp.Budget)
	if fp.Needed != len(want.Routes) || fp.DirectShare != want.DirectShare || fp.Fits != want.Fits {
		t.Errorf("IPv%d: needed %d, share %v, fits %v; routing core: %d, %v, %v", fp.Family, fp.Needed, fp.DirectShare, fp.Fits, len(want.Routes), want.DirectShare, want.Fits)
	}
	for i, r := range want.Routes {
		if fp.Uncovered == 0 && fp.Routes[i].Dst != r.Dst {
			t.Errorf("route %d: %s, routing core %s", i, fp.Routes[i].Dst, r.Dst)
		}
	}
}
