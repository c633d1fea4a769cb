package lab

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/topology"
)

// expectedBird is the minimal table each BGP router's BIRD must hold for
// a server state, from the routing core, as "prefix via|dev X from P"
// lines (every route, not only the chosen ones), sorted:
//
//   - the router's own segments: "dev s-<segment> from segments";
//   - for each bgp leaf group whose hosts sit behind the router, each
//     prefix of routing.ToRRoutes for that group, once per host of the
//     group whose routing.Advertisements include it: "via <host> from
//     h_<host>" (BIRD keeps one route per announcing peer);
//   - for every other router R: R's segments and the ToRRoutes of the
//     groups behind R, once each, "via <R's spine address> from r_<R>"
//     (routers re-announce only their own hosts' routes, best path only).
//
// It also returns, per router, the number of distinct pod prefixes it
// learned (segments left out) and the size of their minimal cover
// (netx.Cover): the aggregation goal is that they are equal.
func expectedBird(t testing.TB, sc *Scenario, snap *api.Snapshot) (map[string][]string, map[string][2]int) {
	t.Helper()
	topo, err := topology.Load([]byte(snap.Topology))
	if err != nil {
		t.Fatal(err)
	}
	type learned struct {
		prefix netip.Prefix
		hosts  []Host // the group's hosts that announce it
	}
	own := map[string][]learned{} // router → what its hosts announce
	for _, n := range topo.Networks {
		in := routing.InputFrom(n, snap.Hosts, snap.Blocks[n.Name], snap.Groups[n.Name], nil)
		tor := routing.ToRRoutes(in)
		for _, g := range slices.Sorted(maps.Keys(tor)) {
			var hosts []routing.Host
			routers := map[string]bool{}
			for _, h := range in.Hosts {
				if h.Group == g {
					hosts = append(hosts, h)
					r, _ := sc.RouterOf(h.Name)
					routers[r.Name] = true
				}
			}
			if len(routers) != 1 {
				t.Fatalf("group %s's hosts sit behind routers %v; the oracle wants one", g, slices.Collect(maps.Keys(routers)))
			}
			router := slices.Collect(maps.Keys(routers))[0]
			for _, p := range tor[g] {
				l := learned{prefix: p}
				for _, h := range hosts {
					ads, err := routing.Advertisements(in, h.Name)
					if err != nil {
						t.Fatal(err)
					}
					if slices.Contains(ads, p) {
						sh, _ := sc.Host(h.Name)
						l.hosts = append(l.hosts, sh)
					}
				}
				own[router] = append(own[router], l)
			}
		}
	}
	// A hybrid's VPC gateway learns the VPC table from the kernel
	// (protocol vpc_table; which host an aggregate targets is the VPC
	// tests' business) and announces it over the spine.
	vpcTable := VPCGatewayRoutes(sc, topo, fabricState(snap))
	want := map[string][]string{}
	counts := map[string][2]int{}
	for _, r := range sc.Routers {
		if r.BGP == nil {
			continue
		}
		var lines []string
		var prefixes []netip.Prefix
		for _, seg := range sc.Segments {
			if seg.Router == r.Name {
				lines = append(lines, fmt.Sprintf("%s dev %s from segments", seg.Subnet, routerSegIf(seg.Name)))
				prefixes = append(prefixes, seg.Subnet)
			}
		}
		if r.VPC != nil {
			for _, p := range vpcTable {
				lines = append(lines, p.String()+" from vpc_table")
				prefixes = append(prefixes, p)
			}
		}
		for _, l := range own[r.Name] {
			for _, h := range l.hosts {
				lines = append(lines, fmt.Sprintf("%s via %s from %s", l.prefix, h.IP, birdProtocol(birdHostPrefix, h.Name)))
			}
			prefixes = append(prefixes, l.prefix)
		}
		for _, o := range sc.Routers {
			if o.Name == r.Name || o.BGP == nil {
				continue
			}
			from := fmt.Sprintf("via %s from %s", o.Spine.Addr(), birdProtocol(birdRouterPrefix, o.Name))
			for _, seg := range sc.Segments {
				if seg.Router == o.Name {
					lines = append(lines, seg.Subnet.String()+" "+from)
					prefixes = append(prefixes, seg.Subnet)
				}
			}
			for _, l := range own[o.Name] {
				lines = append(lines, l.prefix.String()+" "+from)
				prefixes = append(prefixes, l.prefix)
			}
			if o.VPC != nil {
				for _, p := range vpcTable {
					lines = append(lines, p.String()+" "+from)
					prefixes = append(prefixes, p)
				}
			}
		}
		slices.Sort(lines)
		want[r.Name] = lines
		var pods []netip.Prefix // the hosts' announcements, without the segments
		for _, p := range prefixes {
			if !slices.ContainsFunc(sc.Segments, func(s Segment) bool { return s.Subnet == p }) {
				pods = append(pods, p)
			}
		}
		distinct := slices.Compact(netx.Sort(pods))
		counts[r.Name] = [2]int{len(distinct), len(netx.Cover(distinct...))}
	}
	return want, counts
}

// birdAll renders every route of a router's BGP table (BIRD's or FRR's)
// like expectedBird.
func birdAll(ctx context.Context, st *State, router string) ([]string, error) {
	bs, err := ReadBGP(ctx, st, router)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range bs.Routes {
		hop := "dev " + r.Dev + " "
		switch {
		case r.Protocol == "vpc_table":
			hop = ""
		case len(r.Via) > 0:
			hop = "via " + r.Via[0].String() + " "
		}
		out = append(out, r.Prefix.String()+" "+hop+"from "+r.Protocol)
	}
	slices.Sort(out)
	return out, nil
}

// requireBirdTables waits until every BGP router's table (BIRD's or
// FRR's) equals the expected set of the server's current state, and every
// router's kernel holds exactly its chosen BGP routes: BIRD's in table 100
// (protocol bird, nothing static), FRR's in main (protocol bgp, and table
// 100 empty).
func requireBirdTables(t testing.TB, st *State, c *client.Client, within time.Duration) map[string][2]int {
	t.Helper()
	var counts map[string][2]int
	eventually(t, within, func() string {
		snap, err := c.Snapshot(t.Context(), 0, 0)
		if err != nil {
			return err.Error()
		}
		var want map[string][]string
		want, counts = expectedBird(t, st.Scenario, snap)
		for _, r := range st.Scenario.Routers {
			if r.BGP == nil {
				continue
			}
			got, err := birdAll(t.Context(), st, r.Name)
			if err != nil {
				return err.Error()
			}
			if !slices.Equal(got, want[r.Name]) {
				return fmt.Sprintf("%s's BIRD table:\n  %s\nwant (routing core):\n  %s", r.Name, strings.Join(got, "\n  "), strings.Join(want[r.Name], "\n  "))
			}
			// One kernel route per learned prefix (with advertise: blocks
			// each prefix has one origin; several would be one multipath
			// route, which this rendering does not spell out).
			proto, table, kernel := "bird", "100", table100(t, st, r.Name)
			if r.VPC != nil { // table 100 is vpcd's; BIRD writes main
				table, kernel = "main", kernelTable(t, st, r.Name, "main", "bird")
			}
			if r.BGP.RunsFRR() {
				if len(kernel) > 0 {
					return fmt.Sprintf("%s runs FRR, yet its table 100 holds %v", r.Name, kernel)
				}
				proto, table, kernel = "bgp", "main", kernelTable(t, st, r.Name, "main", "bgp")
			}
			var wantKernel []string
			for _, l := range want[r.Name] {
				if f := strings.Fields(l); f[1] == "via" {
					wantKernel = append(wantKernel, f[0]+" via "+f[2]+" proto "+proto)
				}
			}
			if !slices.Equal(kernel, wantKernel) {
				return fmt.Sprintf("%s's table %s holds %v, want the BGP routes %v", r.Name, table, kernel, wantKernel)
			}
		}
		return ""
	})
	return counts
}

// l3-bgp from the real binaries: every pod reaches every pod across the
// racks through BGP-learned routes only; each router's BIRD table is the
// routing core's minimal set (and its kernel table the BGP routes, no
// static route); a host removed at the server has its routes withdrawn
// from both routers, and the rest still reach each other.
func TestPrivilegedLabBGPEndToEnd(t *testing.T) {
	requireBird(t)
	_, st, c := upRoutedLab(t, "l3-bgp", 5*time.Second)
	ctx := t.Context()

	// r2-host-2 leaves as a drained host does: its agent stops (SIGTERM:
	// the speaker sends a Cease), then an admin removes it at the server
	// (terrane ctl hosts remove), which frees its blocks.
	gone := "r2-host-2"
	goneIP, _ := st.Scenario.Host(gone)
	bs, err := ReadBird(ctx, st, "tor-2")
	if err != nil {
		t.Fatal(err)
	}
	var announced []netip.Prefix // what the leaving host announced
	for _, r := range bs.Routes {
		if slices.Contains(r.Via, goneIP.IP) {
			announced = append(announced, r.Prefix)
		}
	}
	if len(announced) == 0 {
		t.Fatalf("tor-2 learned nothing from %s:\n%s", gone, bs.Text())
	}
	agent := slices.IndexFunc(st.Processes, func(p Process) bool { return p.Role == "agent" && p.Node == gone })
	start := time.Now()
	if err := syscall.Kill(st.Processes[agent].PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() string {
		for _, r := range []string{"tor-2", "tor-1"} {
			bs, err := ReadBird(ctx, st, r)
			if err != nil {
				return err.Error()
			}
			for _, br := range bs.Routes {
				if slices.Contains(announced, br.Prefix) {
					return fmt.Sprintf("%s still holds %s after the agent stopped", r, br)
				}
			}
		}
		return ""
	})
	t.Logf("agent of %s stopped: its routes %v left both routers within %s", gone, announced, time.Since(start).Round(time.Millisecond))
	if _, err := c.RemoveHost(ctx, gone); err != nil {
		t.Fatal(err)
	}
	requireBirdTables(t, st, c, 15*time.Second)
	for _, r := range []string{"tor-1", "tor-2"} {
		got, err := birdAll(ctx, st, r)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range got {
			if strings.Contains(l, "via "+goneIP.IP.String()) || strings.Contains(l, "h_r2_host_2") {
				t.Errorf("%s still holds %s", r, l)
			}
		}
	}
	var rest []ProbeTarget
	for _, p := range st.Targets() {
		if p.Host != gone {
			rest = append(rest, p)
		}
	}
	rep, err := Probe(ctx, rest)
	if err != nil {
		t.Fatal(err)
	}
	requireAllReached(t, rep)
}

// claimToBird claims a block for host and returns how long until a route
// covering it is in router's BIRD table; then releases it and waits until
// it is gone.
func claimToBird(tb testing.TB, st *State, c *client.Client, host, network, router string) time.Duration {
	tb.Helper()
	ctx := context.Background()
	covered := func(b netip.Prefix) bool {
		bs, err := ReadBird(ctx, st, router)
		if err != nil {
			tb.Fatal(err)
		}
		return slices.ContainsFunc(bs.Routes, func(r BirdRoute) bool { return r.Prefix.Overlaps(b) })
	}
	start := time.Now()
	claim, err := c.ClaimBlock(ctx, host, network)
	if err != nil {
		tb.Fatal(err)
	}
	for !covered(claim.Block) {
		if time.Since(start) > 20*time.Second {
			tb.Fatalf("block %s claimed by %s never reached %s's BIRD", claim.Block, host, router)
		}
		time.Sleep(2 * time.Millisecond)
	}
	took := time.Since(start)
	if _, err := c.ReleaseBlock(ctx, host, network, claim.Block); err != nil {
		tb.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); covered(claim.Block); {
		if time.Now().After(deadline) {
			tb.Fatalf("released block %s still in %s's BIRD", claim.Block, router)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return took
}

// BenchmarkPrivilegedLabBGPConverge: time from a block claim at the server
// to the route in BIRD's table — at the host's own ToR (server commit,
// the agent's long poll, its GoBGP speaker, BIRD) and at the far ToR (one
// more eBGP hop over the spine): go test -run '^$' -bench BGPConverge
// -benchtime 20x ./internal/lab
func BenchmarkPrivilegedLabBGPConverge(b *testing.B) {
	requireBird(b)
	n := testLab(b)
	st := upScenario(b, n, "l3-bgp")
	c, err := AdminClient(n)
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseIdleConnections()
	for _, where := range []string{"tor-1", "tor-2"} {
		b.Run(where, func(b *testing.B) {
			var total, worst time.Duration
			for range b.N {
				d := claimToBird(b, st, c, "r1-host-1", "fabric", where)
				total += d
				worst = max(worst, d)
			}
			b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/converge")
			b.ReportMetric(float64(worst.Microseconds())/1000, "ms-worst")
		})
	}
}

// upRoutedLab brings up a scenario whose routers run BGP, requires every
// pod pair to reach, and every router's table to be the expected set
// within the given time (logging each one's size against its minimal
// cover); it returns the lab and an admin client of its server.
func upRoutedLab(t *testing.T, scenario string, within time.Duration) (Names, *State, *client.Client) {
	t.Helper()
	n := testLab(t)
	st := upScenario(t, n, scenario)
	rep, err := Probe(t.Context(), st.Targets())
	if err != nil {
		t.Fatal(err)
	}
	requireAllReached(t, rep)
	c, err := AdminClient(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	for r, cnt := range requireBirdTables(t, st, c, within) {
		t.Logf("%s: %d pod prefixes learned, their minimal cover %d", r, cnt[0], cnt[1])
	}
	return n, st, c
}
