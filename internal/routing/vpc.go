package routing

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"strings"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// VPC computes the cloud route table for the hosts of vpc groups under a
// route budget.
//
// It starts direct: one minimal cover of each host's blocks, targeting the
// host. While the table exceeds the budget it aggregates one group, the one
// saving the most routes (ties: the first path in lexical order), replacing
// every route standing for the group's subtree with the minimal cover of the
// group's prefixes. Savings are recomputed after each step and only positive
// ones are taken: savings of disjoint subtrees add up, so when none is
// positive no further aggregation can shrink the table, and the result is
// the smallest table this procedure reaches (MinVPCRoutes) with Fits false.
//
// A table host has Mode vpc and a vpc group at or above its leaf group. A
// group is aggregated only when its aggregate cannot capture traffic it does
// not own: it is vpc with prefixes, every group under it is vpc, every host
// under it is a table host whose blocks lie inside the group's prefixes, and
// no other host's block overlaps those prefixes. Valid state always passes;
// bad state keeps its direct routes instead.
//
// And only when its target can deliver without the table: a leaf vpc group
// is a cloud subnet whose hosts route each other's blocks directly (they are
// L2 peers, see HostRoutes), so any of them can take the subnet's aggregate;
// a group above subnets aggregates only while a single host owns blocks
// under it. A zone aggregate aimed at one host of one subnet would send a
// neighbouring subnet's traffic to a host that can only hand it back to the
// cloud's table: a loop.
func VPC(in Input, budget int) VPCResult {
	t := newVPCTable(in)
	t.aggregate(budget)
	routes := t.routes()
	return VPCResult{
		Routes:      routes,
		Budget:      budget,
		Fits:        len(routes) <= budget,
		DirectShare: directShare(routes, t.hosts),
	}
}

// MinVPCRoutes is the smallest table VPC reaches for in under any budget:
// VPC(in, b).Fits holds exactly when b >= MinVPCRoutes(in). It is at most
// the table with every top-most aggregatable vpc group aggregated, and less
// when a group owns space its hosts leave empty: aggregating its children,
// or leaving a group without hosts out, is then cheaper.
func MinVPCRoutes(in Input) int {
	t := newVPCTable(in)
	t.aggregate(0)
	return t.count
}

type vpcTable struct {
	hosts  []*vpcHost  // table hosts, sorted by name
	groups []*vpcGroup // vpc groups, sorted by path
	count  int         // routes standing now
}

type vpcHost struct {
	name      string
	cover     []netip.Prefix // minimal cover of its blocks
	endpoints []netip.Addr
	groups    []*vpcGroup // vpc groups at or above its leaf group, nearest first
}

type vpcGroup struct {
	path  string
	cover []netip.Prefix // minimal cover of its prefixes
	above []*vpcGroup    // vpc groups above it
	// hostRoutes is the number of direct routes of the table hosts at or
	// under the group.
	hostRoutes int
	// owners are the table hosts at or under the group that own blocks,
	// sorted: with one owner the aggregate can target it directly.
	owners       []string
	aggregatable bool
	aggregated   bool
}

func newVPCTable(in Input) *vpcTable {
	gx := indexGroups(in.Groups)
	t := &vpcTable{}
	byPath := map[string]*vpcGroup{}
	for path, g := range gx {
		if g.Mode == topology.ModeVPC {
			v := &vpcGroup{path: path, cover: netx.Cover(g.Prefixes...), aggregatable: len(g.Prefixes) > 0}
			byPath[path] = v
			t.groups = append(t.groups, v)
		}
	}
	slices.SortFunc(t.groups, func(a, b *vpcGroup) int { return strings.Compare(a.path, b.path) })
	// vpcChain maps a chain of groups to the vpc ones in it.
	vpcChain := func(chain []*Group) []*vpcGroup {
		var out []*vpcGroup
		for _, g := range chain {
			if v := byPath[g.Path]; v != nil {
				out = append(out, v)
			}
		}
		return out
	}
	parents := map[string]bool{}
	for _, g := range gx {
		parents[g.Parent] = true
	}
	for _, g := range gx {
		above := vpcChain(gx.chain(g.Path)[1:])
		if v := byPath[g.Path]; v != nil {
			v.above = above
		} else {
			// A non-vpc group inside a vpc group keeps that group direct.
			for _, a := range above {
				a.aggregatable = false
			}
		}
	}

	hosts := make([]*Host, len(in.Hosts))
	for i := range in.Hosts {
		hosts[i] = &in.Hosts[i]
	}
	slices.SortFunc(hosts, func(a, b *Host) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), a.IP.Compare(b.IP))
	})
	for _, h := range hosts {
		cover := netx.Cover(h.Blocks...)
		groups := vpcChain(gx.chain(h.Group))
		member := h.Mode == topology.ModeVPC && len(groups) > 0
		for _, v := range t.groups {
			mine := slices.Contains(groups, v)
			switch {
			case mine && (!member || !allCoveredBy(cover, v.cover)):
				v.aggregatable = false
			case !mine && overlapAny(cover, v.cover):
				v.aggregatable = false
			}
		}
		if !member {
			continue
		}
		t.hosts = append(t.hosts, &vpcHost{name: h.Name, cover: cover, endpoints: h.Endpoints, groups: groups})
		t.count += len(cover)
		for _, v := range groups {
			v.hostRoutes += len(cover)
			if len(cover) > 0 {
				v.owners = append(v.owners, h.Name)
			}
		}
	}
	for _, v := range t.groups {
		if parents[v.path] && len(v.owners) > 1 {
			v.aggregatable = false // above subnets, with owners in several
		}
	}
	return t
}

// aggregate aggregates groups, largest saving first, until the table fits
// budget or no aggregation shrinks it.
func (t *vpcTable) aggregate(budget int) {
	for t.count > budget {
		var best *vpcGroup
		bestSaving := 0
		for _, g := range t.groups {
			if !g.aggregatable || g.aggregated || g.absorbed() {
				continue
			}
			if s := t.saving(g); s > bestSaving {
				best, bestSaving = g, s
			}
		}
		if best == nil {
			return
		}
		// Max-saving order leaves an ancestor of an aggregated group with no
		// positive saving, so aggregates do not nest in practice; absorb any
		// that would anyway.
		for _, d := range t.groups {
			if slices.Contains(d.above, best) {
				d.aggregated = false
			}
		}
		best.aggregated = true
		t.count -= bestSaving
	}
}

// saving is how many routes aggregating g removes now: the routes standing
// for its subtree (direct ones, and those of aggregated groups under it)
// minus its own cover.
func (t *vpcTable) saving(g *vpcGroup) int {
	standing := g.hostRoutes
	for _, d := range t.groups {
		if d.aggregated && slices.Contains(d.above, g) {
			standing -= d.hostRoutes - len(d.cover)
		}
	}
	return standing - len(g.cover)
}

// absorbed reports whether a group above g is aggregated.
func (g *vpcGroup) absorbed() bool {
	return slices.ContainsFunc(g.above, func(a *vpcGroup) bool { return a.aggregated })
}

func (t *vpcTable) routes() []VPCRoute {
	var out []VPCRoute
	for _, g := range t.groups {
		if !g.aggregated {
			continue
		}
		target := ""
		if len(g.owners) == 1 {
			target = g.owners[0]
		}
		for _, p := range g.cover {
			out = append(out, VPCRoute{Dst: p, Host: target, Group: g.path})
		}
	}
	for _, h := range t.hosts {
		if slices.ContainsFunc(h.groups, func(g *vpcGroup) bool { return g.aggregated }) {
			continue
		}
		for _, p := range h.cover {
			out = append(out, VPCRoute{Dst: p, Host: h.name})
		}
	}
	slices.SortFunc(out, func(a, b VPCRoute) int {
		return cmp.Or(netx.Less(a.Dst, b.Dst), strings.Compare(a.Host, b.Host), strings.Compare(a.Group, b.Group))
	})
	return out
}

// directShare is the share of the table hosts' endpoints whose route (the
// longest match, as the cloud picks it) targets their owner.
func directShare(routes []VPCRoute, hosts []*vpcHost) float64 {
	byDst := make(map[netip.Prefix]string, len(routes))
	var lens []int
	for _, r := range routes {
		if _, dup := byDst[r.Dst]; !dup {
			byDst[r.Dst] = r.Host
		}
		lens = append(lens, r.Dst.Bits())
	}
	slices.Sort(lens)
	slices.Reverse(lens)
	lens = slices.Compact(lens)
	total, direct := 0, 0
	for _, h := range hosts {
		for _, a := range h.endpoints {
			total++
			for _, l := range lens {
				p, err := a.Prefix(l)
				if err != nil {
					continue
				}
				if target, ok := byDst[p]; ok {
					if target == h.name {
						direct++
					}
					break
				}
			}
		}
	}
	if total > 0 {
		return float64(direct) / float64(total)
	}
	// No endpoint is known (pod addresses live on their nodes, not in the
	// server): weigh the block addresses instead.
	var size, straight float64
	for _, h := range hosts {
		for _, p := range h.cover {
			n := math.Exp2(float64(p.Addr().BitLen() - p.Bits()))
			size += n
			if longestTarget(byDst, lens, p) == h.name {
				straight += n
			}
		}
	}
	if size == 0 {
		return 1
	}
	return straight / size
}

// longestTarget is the target host of the longest route containing p.
func longestTarget(byDst map[netip.Prefix]string, lens []int, p netip.Prefix) string {
	for _, l := range lens {
		if l > p.Bits() {
			continue
		}
		q, err := p.Addr().Prefix(l)
		if err != nil {
			continue
		}
		if target, ok := byDst[q]; ok {
			return target
		}
	}
	return ""
}

// allCoveredBy reports whether every prefix of ps lies inside one of outer,
// which must be a minimal cover for the answer to be exact.
func allCoveredBy(ps, outer []netip.Prefix) bool {
	for _, p := range ps {
		if !netx.CoveredBy(p, outer) {
			return false
		}
	}
	return true
}

func overlapAny(a, b []netip.Prefix) bool {
	for _, p := range a {
		if netx.AnyOverlap(p, b) {
			return true
		}
	}
	return false
}
