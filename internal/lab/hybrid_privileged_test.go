package lab

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/topology"
)

// hybrid from the real binaries: two racks behind BGP ToRs (BIRD and
// FRR) and two zones behind one VPC route table, one network. Every pod
// reaches every pod; the VPC table holds exactly the routing core's set
// (routing.VPCTable, what the server's reconciler plans) and never more
// than its budget, which forces aggregation (6 cloud hosts, 4 routes),
// and the server reports the same count; each ToR's table (and the VPC
// gateway's) is exactly its segments, its hosts' announcements, the
// other ToR's and the VPC's zones and table — nothing else.
func TestPrivilegedLabHybrid(t *testing.T) {
	requireBird(t)
	requireFRR(t)
	n, st, c := upRoutedLab(t, "hybrid", 10*time.Second)
	ctx := t.Context()

	vr, _ := st.Scenario.VPCRouter()
	budget := vr.VPC.Budget
	mirror, err := ReadVPCStatus(n)
	if err != nil {
		t.Fatal(err)
	}
	if mirror.MaxRoutes > budget || mirror.Routes > budget || mirror.Error != "" {
		t.Errorf("vpcd: %+v; the table must never exceed the budget %d", mirror, budget)
	}
	snap, err := c.Snapshot(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	topo, err := topology.Load([]byte(snap.Topology))
	if err != nil {
		t.Fatal(err)
	}
	in := routing.InputFrom(topo.Networks[0], snap.Hosts, snap.Blocks[topo.Networks[0].Name], snap.Groups[topo.Networks[0].Name], nil)
	want := routing.VPCTable(in, budget)
	if !want.Fits || len(want.Routes) > budget {
		t.Fatalf("the routing core's table does not fit: %+v", want)
	}
	var wantDst, got []netip.Prefix
	aggregates := 0
	for _, r := range want.Routes {
		wantDst = append(wantDst, r.Dst)
		if r.Group != "" {
			aggregates++
		}
	}
	for p := range vpcKernel(t, st, vr.Name) {
		got = append(got, p)
	}
	if !slices.Equal(netx.Sort(got), netx.Sort(wantDst)) {
		t.Errorf("the VPC router's table %v, want the routing core's %v", got, wantDst)
	}
	if aggregates == 0 {
		t.Errorf("no aggregate in %v: 6 cloud hosts in a budget of %d must force some", want.Routes, budget)
	}
	for _, r := range want.Routes {
		for _, h := range in.Hosts {
			if h.Mode == topology.ModeBGP && slices.ContainsFunc(snap.Blocks[topo.Networks[0].Name], func(b ipam.BlockInfo) bool { return b.Host == h.Name && r.Dst.Overlaps(b.Prefix) }) {
				t.Errorf("VPC route %s covers rack host %s's block", r.Dst, h.Name)
			}
		}
	}
	vs, err := c.VPC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs.Tables) != 1 || len(vs.Tables[0].Families) != 1 || vs.Tables[0].Families[0].Routes != len(want.Routes) || vs.Tables[0].Families[0].Needed != len(want.Routes) {
		t.Errorf("the server's VPC status %+v, want one table holding and needing %d routes", vs.Tables, len(want.Routes))
	}
	t.Logf("VPC table: %d routes of budget %d, %d aggregates: %v", len(want.Routes), budget, aggregates, wantDst)
	for _, r := range []string{"tor-1", "tor-2"} {
		bs, err := ReadBGP(ctx, st, r)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range bs.Protocols {
			if p.Proto == "BGP" && !p.Established() {
				t.Errorf("%s: session %s is %s", r, p.Name, p.Info)
			}
		}
		t.Logf("%s:\n%s", r, bs.Text())
	}
}
