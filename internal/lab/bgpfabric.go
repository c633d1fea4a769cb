package lab

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/topology"
)

// BGPWant is, per BGP router, the prefixes its table (BIRD's or FRR's)
// should hold for a server state (pure), sorted: every BGP router's
// segments (its own from protocol direct, the others' over the spine),
// every announcement of every host that peers with a BGP router
// (routing.Advertisements: its blocks merged, or its group's prefixes)
// and, in a hybrid, the VPC route table the VPC's gateway announces
// (VPCGatewayRoutes). Every router holds the same
// prefixes; they differ in next hops (a host at its own router, the
// host's router elsewhere). Up waits for it.
func BGPWant(sc *Scenario, t *topology.Topology, fs FabricState) map[string][]netip.Prefix {
	all := map[netip.Prefix]bool{}
	for _, seg := range sc.Segments {
		if r, ok := sc.Router(seg.Router); ok && r.BGP != nil {
			all[seg.Subnet] = true
		}
	}
	for _, p := range VPCGatewayRoutes(sc, t, fs) {
		all[p] = true
	}
	if t != nil {
		speakers := hostSpeakers(sc, t)
		for _, n := range t.Networks {
			in := routing.InputFrom(n, fs.Hosts, fs.Blocks[n.Name], fs.Groups[n.Name], nil)
			for _, h := range in.Hosts {
				if _, ok := speakers[h.Name]; !ok {
					continue
				}
				ps, _ := routing.Advertisements(in, h.Name)
				for _, p := range ps {
					all[p] = true
				}
			}
		}
	}
	want := netx.Sort(slices.Collect(maps.Keys(all)))
	out := map[string][]netip.Prefix{}
	for _, r := range sc.Routers {
		if r.BGP != nil {
			out[r.Name] = slices.Clone(want)
		}
	}
	return out
}

// Prefixes lists the distinct prefixes of a BIRD table, sorted.
func (bs *BirdState) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, r := range bs.Routes {
		out = append(out, r.Prefix)
	}
	return slices.Compact(netx.Sort(out))
}

// WaitBGP waits until every BGP router's BIRD holds exactly BGPWant of the
// server's current state.
func WaitBGP(ctx context.Context, st *State, c *client.Client) error {
	if !st.Scenario.BGPRouters() {
		return nil
	}
	snap, err := c.Snapshot(ctx, 0, 0)
	if err != nil {
		return fmt.Errorf("read the server's state: %w", err)
	}
	t, err := topology.Load([]byte(snap.Topology))
	if err != nil {
		return fmt.Errorf("the server's topology: %w", err)
	}
	want := BGPWant(st.Scenario, t, fabricState(snap))
	var last error // the last answer, not the timeout that cut a query short
	return waitFor(ctx, nil, 30*time.Second, "BGP routers", func(ctx context.Context) error {
		var bad []string
		for _, r := range st.Scenario.Routers {
			if r.BGP == nil {
				continue
			}
			bs, err := ReadBGP(ctx, st, r.Name)
			if err != nil {
				if ctx.Err() != nil && last != nil {
					return last
				}
				last = err
				return err
			}
			if got := bs.Prefixes(); !slices.Equal(got, want[r.Name]) {
				bad = append(bad, fmt.Sprintf("%s holds %s, want %s", r.Name, prefixList(got), prefixList(want[r.Name])))
				continue
			}
			if bs.Daemon == DaemonFRR {
				// zebra installs what bgpd chose a moment later: wait
				// for the kernel, which forwards.
				missing, err := notInKernel(ctx, st, r.Name, bs)
				if err != nil {
					last = err
					return err
				}
				if len(missing) > 0 {
					bad = append(bad, fmt.Sprintf("%s's kernel lacks %s, chosen by bgpd", r.Name, prefixList(missing)))
				}
			}
		}
		if len(bad) > 0 {
			last = fmt.Errorf("BGP routers' tables differ from the server's state: %s", strings.Join(bad, "; "))
			return last
		}
		return nil
	})
}

// notInKernel lists the BGP-learned routes the router's daemon chose
// that its namespace's main table does not hold yet.
func notInKernel(ctx context.Context, st *State, router string, bs *BirdState) ([]netip.Prefix, error) {
	nr, err := ReadRoutes(ctx, router, "router", st.names().Node(router))
	if err != nil {
		return nil, err
	}
	installed := map[string]bool{}
	for _, kr := range nr.Routes {
		if kr.Table == "main" {
			installed[kr.Dst] = true
		}
	}
	var missing []netip.Prefix
	for _, br := range bs.Routes {
		if br.Primary && br.Protocol != "segments" && len(br.Via) > 0 && !installed[br.Prefix.String()] {
			missing = append(missing, br.Prefix)
		}
	}
	return missing, nil
}

func prefixList(ps []netip.Prefix) string { return netx.Join(ps, " ", "nothing") }

// VPCGatewayRoutes is what a hybrid's VPC gateway announces to the ToRs
// besides its segments (pure): the VPC route table of the server's state,
// each IPv4 network's routing.VPCTable under the router's budget (the
// routing core's set, which the server's reconciler writes and vpcd
// mirrors into the router's kernel). Nil without a VPC router that
// speaks BGP.
func VPCGatewayRoutes(sc *Scenario, t *topology.Topology, fs FabricState) []netip.Prefix {
	vr, ok := sc.VPCRouter()
	if !ok || vr.BGP == nil || t == nil {
		return nil
	}
	var out []netip.Prefix
	for _, n := range t.Networks {
		if !n.CIDR.Addr().Is4() {
			continue
		}
		in := routing.InputFrom(n, fs.Hosts, fs.Blocks[n.Name], fs.Groups[n.Name], nil)
		for _, r := range routing.VPCTable(in, vr.VPC.Budget).Routes {
			out = append(out, r.Dst)
		}
	}
	return netx.Sort(out)
}
