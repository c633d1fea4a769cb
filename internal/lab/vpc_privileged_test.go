package lab

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/topology"
)

// vpcKernel reads the VPC router's table 100 as prefix → next hop.
func vpcKernel(t *testing.T, st *State, router string) map[netip.Prefix]netip.Addr {
	t.Helper()
	nr, err := ReadRoutes(t.Context(), router, "router", st.names().Node(router))
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Prefix]netip.Addr{}
	for _, r := range nr.Routes {
		if r.Table != "100" {
			continue
		}
		dst := r.Dst
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		out[netip.MustParsePrefix(dst)] = netip.MustParseAddr(r.Gateway)
	}
	return out
}

// aws-3zone from the real binaries (3 zones, 12 hosts, a table budget of
// 8): the server's reconciler writes the fake EC2's table and vpcd mirrors
// it into the vpc router. The table never held more than the budget (the
// fake's route limit is the budget, and vpcd records the most it held);
// the router's kernel table is the routing core's VPC set for the server's
// state (each direct route via its owner, each aggregate via a host of its
// group); every instance had its source/destination check turned off;
// every pod reaches every pod, those of aggregated zones through the
// aggregate's host; the report shows the table and the direct share.
func TestPrivilegedLabVPCRouter(t *testing.T) {
	requireRoot(t)
	n := testLab(t)
	st := upScenario(t, n, "aws-3zone")
	sc := st.Scenario
	vr, _ := sc.VPCRouter()
	budget := vr.VPC.Budget

	mirror, err := ReadVPCStatus(n)
	if err != nil {
		t.Fatal(err)
	}
	if mirror.MaxRoutes > budget || mirror.Routes > budget || mirror.Error != "" {
		t.Errorf("vpcd: %+v; the table must never exceed the budget %d", mirror, budget)
	}
	if len(mirror.SourceDestCheckOff) != len(sc.Hosts) {
		t.Errorf("source/dest check off on %v, want every host's instance", mirror.SourceDestCheckOff)
	}

	c, err := AdminClient(n)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	snap, err := c.Snapshot(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	topo, err := topology.Load([]byte(snap.Topology))
	if err != nil {
		t.Fatal(err)
	}
	net := topo.Networks[0]
	in := routing.InputFrom(net, snap.Hosts, snap.Blocks[net.Name], snap.Groups[net.Name], nil)
	want := routing.VPCTable(in, budget)
	if !want.Fits || len(want.Routes) > budget {
		t.Fatalf("the routing core's table does not fit: %+v", want)
	}
	if direct := len(sc.Hosts); direct <= budget {
		t.Fatalf("%d hosts fit %d direct routes: the scenario must force aggregation", direct, budget)
	}
	kernel := vpcKernel(t, st, vr.Name)
	ipOf := map[string]netip.Addr{}
	groupOf := map[string]string{}
	for _, h := range in.Hosts {
		ipOf[h.Name], groupOf[h.Name] = h.IP, h.Group
	}
	var got, wantDst []netip.Prefix
	for p := range kernel {
		got = append(got, p)
	}
	for _, r := range want.Routes {
		wantDst = append(wantDst, r.Dst)
		via, ok := kernel[r.Dst]
		switch {
		case !ok:
		case r.Group == "" && via != ipOf[r.Host]:
			t.Errorf("direct route %s via %s, want its owner %s (%s)", r.Dst, via, r.Host, ipOf[r.Host])
		case r.Group != "":
			if i := slices.IndexFunc(in.Hosts, func(h routing.Host) bool { return h.IP == via }); i < 0 || !strings.HasPrefix(in.Hosts[i].Group+"/", r.Group+"/") {
				t.Errorf("aggregate %s of %s via %s, not a host of the group", r.Dst, r.Group, via)
			}
		}
	}
	if !slices.Equal(netx.Sort(got), netx.Sort(wantDst)) {
		t.Errorf("vpc router's table %v, want the routing core's %v", got, wantDst)
	}
	aggregates := 0
	for _, r := range want.Routes {
		if r.Group != "" {
			aggregates++
		}
	}
	if aggregates == 0 {
		t.Errorf("no aggregate in %v: the budget should force some", want.Routes)
	}
	t.Logf("table: %d routes of budget %d, %d of them aggregates", len(want.Routes), budget, aggregates)

	rep, err := Probe(t.Context(), st.Targets())
	if err != nil {
		t.Fatal(err)
	}
	requireAllReached(t, rep)

	text, err := Gather(t.Context(), st, false)
	if err != nil {
		t.Fatal(err)
	}
	if s := text.Text(); !strings.Contains(s, "VPC ROUTE TABLE") || !strings.Contains(s, "direct share") ||
		!strings.Contains(s, "router vpc          VPC route table rtb-lab, budget 8") || strings.Contains(s, "invalid Prefix") {
		t.Errorf("the report lacks the VPC table or the VPC router's line (and says nothing invalid):\n%s", s)
	}
	if v := text.VPC; v == nil || v.Pods != len(st.Pods) || v.PodsDirect == 0 || v.PodsDirect == v.Pods {
		t.Errorf("pods routed directly: %+v; want some but not all (the budget forces aggregates)", v)
	} else {
		t.Logf("pods routed straight to their host: %d of %d", v.PodsDirect, v.Pods)
	}
}
