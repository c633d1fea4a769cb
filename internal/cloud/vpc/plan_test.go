package vpc

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/topology"
)

var pfx = netip.MustParsePrefix

// zoneSnap is one zone /24 whose hosts each own one /28: with budget 1 the
// zone is aggregated and the aggregate targets one of its hosts.
func zoneSnap(hosts ...string) Snapshot {
	s := Snapshot{Instances: map[string]string{}}
	n := Network{Name: "pods", CIDR: pfx("10.30.0.0/16")}
	n.Input.Groups = []routing.Group{{Path: "z1", Mode: topology.ModeVPC, Prefixes: []netip.Prefix{pfx("10.30.0.0/24")}}}
	for i, h := range hosts {
		b := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 30, 0, byte(16 * i)}), 28)
		n.Input.Hosts = append(n.Input.Hosts, routing.Host{Name: h, Group: "z1", Mode: topology.ModeVPC, Blocks: []netip.Prefix{b}})
		s.Instances[h] = "i-" + h
	}
	s.Networks = []Network{n}
	return s
}

func TestAggregateTargetStickyAndFailover(t *testing.T) {
	spec := TableSpec{ID: "rtb-1", Budget4: 1}
	snap := zoneSnap("a", "b", "c")
	first := Desired(spec, snap, nil)
	if len(first.Families) != 1 || len(first.Families[0].Routes) != 1 {
		t.Fatalf("plan = %+v", first)
	}
	agg := first.Families[0].Routes[0]
	if agg.Dst != pfx("10.30.0.0/24") || agg.Group != "z1" {
		t.Fatalf("aggregate = %+v", agg)
	}
	table := []CloudRoute{{Dst: agg.Dst, Instance: agg.Instance, Origin: OriginCreateRoute}}

	// A host joining does not move the aggregate.
	grown := zoneSnap("a", "b", "c", "d", "e")
	if got := Desired(spec, grown, table).Families[0].Routes[0]; got.Host != agg.Host {
		t.Errorf("after hosts joined the aggregate moved from %s to %s", agg.Host, got.Host)
	}
	// The target turning unhealthy moves it to a healthy host.
	snap.Healthy = map[string]bool{"a": true, "b": true, "c": true}
	delete(snap.Healthy, agg.Host)
	moved := Desired(spec, snap, table).Families[0].Routes[0]
	if moved.Host == agg.Host || !snap.Healthy[moved.Host] {
		t.Fatalf("failover chose %s (old %s, healthy %v)", moved.Host, agg.Host, snap.Healthy)
	}
	ops := Diff(Desired(spec, snap, table), table)
	if len(ops) != 1 || ops[0].Kind != OpReplace || ops[0].Instance != "i-"+moved.Host {
		t.Errorf("failover ops = %v, want one ReplaceRoute to i-%s", ops, moved.Host)
	}
	// No healthy host: the route stays where it is, and says so.
	snap.Healthy = map[string]bool{}
	none := Desired(spec, snap, table)
	if got := none.Families[0].Routes[0]; got.Host != agg.Host {
		t.Errorf("with no healthy host the aggregate moved to %s", got.Host)
	}
	if !slices.ContainsFunc(none.Problems, func(p string) bool { return strings.Contains(p, "no healthy host in group z1") }) {
		t.Errorf("problems = %v", none.Problems)
	}
	// A blackholed target (terminated instance) is replaced.
	table[0].Blackhole = true
	snap.Healthy = nil
	if ops := Diff(Desired(spec, snap, table), table); len(ops) != 1 || ops[0].Kind != OpReplace {
		t.Errorf("blackhole ops = %v", ops)
	}
}

func TestMissingInstanceLabel(t *testing.T) {
	snap := zoneSnap("a", "b")
	delete(snap.Instances, "b")
	p := Desired(TableSpec{ID: "rtb-1", Budget4: 10}, snap, nil)
	fp := p.Families[0]
	if len(fp.Routes) != 1 || fp.Uncovered != 1 || fp.Needed != 2 {
		t.Errorf("routes %v, uncovered %d, needed %d", fp.Routes, fp.Uncovered, fp.Needed)
	}
	if !slices.Equal(p.Problems, []string{"host b has no instance label: its blocks are not routed"}) {
		t.Errorf("problems = %v", p.Problems)
	}
	if !slices.Equal(p.Instances, []string{"i-a"}) {
		t.Errorf("instances = %v", p.Instances)
	}
}

func TestUnknownGroup(t *testing.T) {
	p := Desired(TableSpec{ID: "rtb-1", Groups: []string{"z9"}, Budget4: 10}, zoneSnap("a"), nil)
	if !slices.Contains(p.Problems, "group z9 is in no network of the topology") {
		t.Errorf("problems = %v", p.Problems)
	}
}

func TestOverBudgetLeavesTable(t *testing.T) {
	// Two hosts in a zone without prefixes, their blocks apart: no route
	// may cover the space between them, which is no group's.
	snap := zoneSnap("a", "b")
	snap.Networks[0].Input.Groups[0].Prefixes = nil
	snap.Networks[0].Input.Hosts[1].Blocks = []netip.Prefix{pfx("10.30.0.32/28")}
	table := []CloudRoute{{Dst: pfx("10.30.0.0/28"), Instance: "i-a", Origin: OriginCreateRoute}}
	p := Desired(TableSpec{ID: "rtb-1", Budget4: 1}, snap, table)
	if p.Families[0].Fits || len(p.Families[0].Routes) != 0 {
		t.Fatalf("plan = %+v", p.Families[0])
	}
	if ops := Diff(p, table); len(ops) != 0 {
		t.Errorf("over budget yet ops %v", ops)
	}
	if len(p.Problems) != 1 || !strings.Contains(p.Problems[0], "2 routes needed at the most aggregation, over the budget of 1") {
		t.Errorf("problems = %v", p.Problems)
	}
}

func TestOwned(t *testing.T) {
	nets := []netip.Prefix{pfx("10.30.0.0/16"), pfx("fd00:30::/112")}
	tests := []struct {
		r    CloudRoute
		want bool
	}{
		{CloudRoute{Dst: pfx("10.30.1.0/28"), Instance: "i-1", Origin: OriginCreateRoute}, true},
		{CloudRoute{Dst: pfx("10.30.0.0/16"), Target: "nat-1", Origin: OriginCreateRoute}, true},
		{CloudRoute{Dst: pfx("fd00:30::40/122"), Instance: "i-1", Origin: OriginCreateRoute}, true},
		{CloudRoute{Dst: pfx("10.30.0.0/15"), Instance: "i-1", Origin: OriginCreateRoute}, false},  // wider than a network
		{CloudRoute{Dst: pfx("10.31.0.0/24"), Instance: "i-1", Origin: OriginCreateRoute}, false},  // outside
		{CloudRoute{Dst: pfx("10.30.0.0/16"), Target: "local", Origin: "CreateRouteTable"}, false}, // the VPC's own
		{CloudRoute{Dst: pfx("10.30.5.0/24"), Target: "vgw-1", Origin: "EnableVgwRoutePropagation"}, false},
	}
	for _, tt := range tests {
		if got := Owned(tt.r, nets); got != tt.want {
			t.Errorf("Owned(%+v) = %v, want %v", tt.r, got, tt.want)
		}
	}
}

// TestDiffAggregatesFullTable: a table with one route free (what a plan
// keeps) becomes one aggregate without passing the budget. The smallest all-direct table already holds a's
// route over the whole zone (its free space included), with b's and c's
// blocks as exceptions: aggregating keeps that route where it is (its
// target is a host of the zone) and only deletes the exceptions.
func TestDiffAggregatesFullTable(t *testing.T) {
	snap := zoneSnap("a", "b", "c")
	spec := TableSpec{ID: "rtb-1", Budget4: 4} // 3 routes and one kept free
	var table []CloudRoute
	for _, d := range Desired(spec, snap, nil).Families[0].Routes {
		table = append(table, CloudRoute{Dst: d.Dst, Instance: d.Instance, Origin: OriginCreateRoute})
	}
	if len(table) != 3 || table[0].Dst != pfx("10.30.0.0/24") || table[0].Instance != "i-a" {
		t.Fatalf("3 hosts, budget 4: table %v, want a's /24 first of 3", table)
	}
	if ops := Diff(Desired(spec, snap, table), table); len(ops) != 0 {
		t.Fatalf("3 hosts fit a budget of 4, yet %v", ops)
	}
	snap.Networks[0].Input.Hosts = append(snap.Networks[0].Input.Hosts, routing.Host{Name: "d", Group: "z1", Mode: topology.ModeVPC, Blocks: []netip.Prefix{pfx("10.30.0.48/28")}})
	snap.Instances["d"] = "i-d"
	p := Desired(spec, snap, table)
	if rs := p.Families[0].Routes; len(rs) != 1 || rs[0].Dst != pfx("10.30.0.0/24") || rs[0].Instance != "i-a" {
		t.Fatalf("4 hosts, budget 4 (3 with one free): routes %v, want the zone's /24 kept on i-a", rs)
	}
	got := Diff(p, table)
	var kinds []OpKind
	for _, o := range got {
		kinds = append(kinds, o.Kind)
	}
	if want := []OpKind{OpDelete, OpDelete}; !slices.Equal(kinds, want) {
		t.Errorf("ops = %v, want %v", got, want)
	}
}
