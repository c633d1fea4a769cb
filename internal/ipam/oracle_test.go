package ipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// This file is a brute-force oracle: it recomputes what must hold from the
// view accessors and the topology alone, never from the allocator's
// internal fields, so a bug in the bookkeeping cannot hide itself.

// reservedIn is what no group may own in n: reservations and service CIDRs.
func reservedIn(top *topology.Topology, n *topology.Network) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range slices.Concat(top.Reservations, top.ServiceCIDRs) {
		if r.Overlaps(n.CIDR) {
			out = append(out, r)
		}
	}
	return out
}

// violations lists every invariant v breaks, one line each.
func violations(top *topology.Topology, v view) []string {
	var bad []string
	report := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }

	hosts := map[string]HostInfo{}
	for _, h := range v.Hosts {
		hosts[h.Name] = h
	}
	checkPlacement(top, v.Hosts, report)

	epsByBlock := map[string]map[netip.Prefix]int{}
	for _, n := range top.Networks {
		epsByBlock[n.Name] = map[netip.Prefix]int{}
	}
	// (a) no address twice in a network; (b) every endpoint in a block of
	// its own host.
	seen := map[string]map[netip.Addr]string{}
	blocks := map[string]map[netip.Prefix]BlockInfo{}
	for _, n := range top.Networks {
		blocks[n.Name] = map[netip.Prefix]BlockInfo{}
		for _, b := range v.Nets[n.Name].Blocks {
			blocks[n.Name][b.Prefix] = b
		}
	}
	for _, e := range v.Endpoints {
		n := top.Network(e.Network)
		if n == nil {
			report("endpoint %s in unknown network %q", e.ID, e.Network)
			continue
		}
		if seen[e.Network] == nil {
			seen[e.Network] = map[netip.Addr]string{}
		}
		if prev, dup := seen[e.Network][e.Addr]; dup {
			report("invariant 1: %s handed out twice in %s: endpoints %s and %s", e.Addr, e.Network, prev, e.ID)
		}
		seen[e.Network][e.Addr] = e.ID
		b, ok := blocks[e.Network][e.Block]
		switch {
		case !ok:
			report("endpoint %s (%s) names block %s, which is not claimed", e.ID, e.Addr, e.Block)
		case b.Host != e.Host:
			report("endpoint %s of host %s lies in block %s of host %s", e.ID, e.Host, e.Block, b.Host)
		case !e.Block.Contains(e.Addr):
			report("endpoint %s address %s outside its block %s", e.ID, e.Addr, e.Block)
		}
		if _, ok := hosts[e.Host]; !ok {
			report("endpoint %s on unknown host %s", e.ID, e.Host)
		}
		if netx.AnyOverlap(netip.PrefixFrom(e.Addr, e.Addr.BitLen()), reservedIn(top, n)) {
			report("endpoint %s address %s is reserved", e.ID, e.Addr)
		}
		if !n.Allows(e.Namespace) {
			report("endpoint %s of namespace %q in network %s, which does not admit it", e.ID, e.Namespace, n.Name)
		}
		epsByBlock[e.Network][e.Block]++
	}

	for _, n := range top.Networks {
		nv := v.Nets[n.Name]
		reserved := reservedIn(top, n)
		checkGroupPrefixes(n, nv.Prefixes, reserved, report)
		// (c) blocks: right size, disjoint, inside their group, clear of
		// reservations, in the host's leaf unless draining.
		for i, b := range nv.Blocks {
			if b.Prefix.Bits() != n.BlockBits || b.Prefix.Masked() != b.Prefix || !netx.Covers(n.CIDR, b.Prefix) {
				report("block %s is not a /%d of %s", b.Prefix, n.BlockBits, n.CIDR)
			}
			if i > 0 && netx.Less(nv.Blocks[i-1].Prefix, b.Prefix) >= 0 {
				report("blocks %s and %s out of order or duplicated", nv.Blocks[i-1].Prefix, b.Prefix)
			}
			if i > 0 && nv.Blocks[i-1].Prefix.Overlaps(b.Prefix) {
				report("blocks %s and %s overlap", nv.Blocks[i-1].Prefix, b.Prefix)
			}
			if netx.AnyOverlap(b.Prefix, reserved) {
				report("block %s overlaps a reservation %v", b.Prefix, reserved)
			}
			if !netx.CoveredBy(b.Prefix, nv.Prefixes[b.Group]) {
				report("invariant 2: block %s of %s lies outside its group %s %v", b.Prefix, b.Host, b.Group, nv.Prefixes[b.Group])
			}
			if g := n.Tree.Group(b.Group); g == nil || !g.IsLeaf() {
				report("block %s in %q, not a leaf group", b.Prefix, b.Group)
			}
			h, ok := hosts[b.Host]
			switch {
			case !ok:
				report("block %s owned by unknown host %s", b.Prefix, b.Host)
			case h.Groups[n.Name] != b.Group && b.Used == 0 && b.Issuer == IssuerServer:
				// (An agent block of a left group drains at the agent's pace.)
				report("block %s of %s is empty but in %s, not the host's group %s", b.Prefix, b.Host, b.Group, h.Groups[n.Name])
			}
			if got := epsByBlock[n.Name][b.Prefix]; got != b.Used {
				report("block %s says %d used, holds %d endpoints", b.Prefix, b.Used, got)
			}
		}
	}
	return bad
}

// checkGroupPrefixes: (d) prefixes of groups that are not ancestor and
// descendant are disjoint; a child's lie inside its parent's; top-level
// ones inside the network; none overlaps a reservation.
func checkGroupPrefixes(n *topology.Network, prefixes map[string][]netip.Prefix, reserved []netip.Prefix, report func(string, ...any)) {
	for path, ps := range prefixes {
		g := n.Tree.Group(path)
		if g == nil {
			report("network %s: prefixes %v of unknown group %q", n.Name, ps, path)
			continue
		}
		if len(ps) == 0 {
			report("network %s: group %s listed with no prefixes", n.Name, path)
		}
		if pinnedIn(n, g) {
			for _, p := range ps {
				if !netx.Covers(g.Pinned, p) {
					report("pinned group %s owns %s outside its pin %s", path, p, g.Pinned)
				}
			}
		}
		for i, p := range ps {
			if !p.IsValid() || p.Masked() != p {
				report("group %s: bad prefix %v", path, p)
			}
			if i > 0 && (netx.Less(ps[i-1], p) >= 0 || ps[i-1].Overlaps(p)) {
				report("group %s: prefixes %v not sorted and disjoint", path, ps)
			}
			if !netx.Covers(n.CIDR, p) {
				report("group %s: prefix %s outside network %s", path, p, n.CIDR)
			}
			if netx.AnyOverlap(p, reserved) {
				report("invariant 2: group %s prefix %s overlaps a reservation %v", path, p, reserved)
			}
			if g.Parent != nil && !netx.CoveredBy(p, prefixes[g.Parent.Path]) {
				report("group %s prefix %s outside its parent %s %v", path, p, g.Parent.Path, prefixes[g.Parent.Path])
			}
		}
	}
	paths := slices.Sorted(func(yield func(string) bool) {
		for p := range prefixes {
			if !yield(p) {
				return
			}
		}
	})
	for i, p1 := range paths {
		g1 := n.Tree.Group(p1)
		for _, p2 := range paths[i+1:] {
			g2 := n.Tree.Group(p2)
			if g1 == nil || g2 == nil || g1.IsAncestorOf(g2) || g2.IsAncestorOf(g1) {
				continue
			}
			for _, a := range prefixes[p1] {
				if netx.AnyOverlap(a, prefixes[p2]) {
					report("invariant 2: groups %s and %s overlap at %s (%v)", p1, p2, a, prefixes[p2])
				}
			}
		}
	}
}

// checkPlacement: every host sits in one leaf per network, the same leaf
// in every network of a tree: the one naming it, else a most specific leaf
// that admits its labels.
func checkPlacement(top *topology.Topology, hosts []HostInfo, report func(string, ...any)) {
	for _, h := range hosts {
		if len(h.Groups) != len(top.Networks) {
			report("host %s has groups %v; want one per network", h.Name, h.Groups)
		}
		for _, tr := range top.Trees {
			path := h.Groups[tr.Networks[0].Name]
			for _, n := range tr.Networks {
				if h.Groups[n.Name] != path {
					report("host %s in %s in network %s but %s in %s of the same tree", h.Name, h.Groups[n.Name], n.Name, path, tr.Networks[0].Name)
				}
			}
			g := tr.Group(path)
			if g == nil || !g.IsLeaf() {
				report("host %s in %q, not a leaf", h.Name, path)
				continue
			}
			if sg, sh, ok := tr.StaticHost(h.Name); ok {
				if g != sg || h.IP != sh.IP {
					report("static host %s at %s (%s), want %s (%s)", h.Name, path, h.IP, sg.Path, sh.IP)
				}
				continue
			}
			if best := bestLeaves(tr, h.Labels); !slices.Contains(best, g) {
				report("host %s (labels %v) in %s; the most specific admitting leaves are %v", h.Name, h.Labels, path, groupPaths(best))
			}
		}
	}
}

// bestLeaves are the admitting leaves of greatest specificity.
func bestLeaves(tr *topology.Tree, labels map[string]string) []*topology.Group {
	var best []*topology.Group
	for _, g := range tr.Leaves {
		switch {
		case !g.Admits(labels):
		case len(best) == 0 || g.Specificity > best[0].Specificity:
			best = []*topology.Group{g}
		case g.Specificity == best[0].Specificity:
			best = append(best, g)
		}
	}
	return best
}

func groupPaths(gs []*topology.Group) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = g.Path
	}
	return out
}

// freeSlots lists the block-sized prefixes inside within that no block
// holds and no reservation touches.
func freeSlots(top *topology.Topology, n *topology.Network, blocks []BlockInfo, within []netip.Prefix) []netip.Prefix {
	taken := map[netip.Prefix]bool{}
	for _, b := range blocks {
		taken[b.Prefix] = true
	}
	reserved := reservedIn(top, n)
	var out []netip.Prefix
	for _, w := range within {
		if w.Bits() > n.BlockBits {
			continue
		}
		count := uint64(1) << (n.BlockBits - w.Bits())
		for i := range count {
			p, _ := netx.Nth(w, n.BlockBits, i)
			if !taken[p] && !netx.AnyOverlap(p, reserved) {
				out = append(out, p)
			}
		}
	}
	return out
}

// viewRouteFloors recomputes RouteFloors from the views: the fewest routes
// of a VPC table that sends every address of a populated subnet's (vpc
// leaf with blocks) prefixes to that subnet, may cover the other space of
// vpc groups, and no other space — by an exact search over every prefix
// and target, not ORTC — and the most prefixes a bgp group that announces
// its group prefixes holds.
func viewRouteFloors(n *topology.Network, nv netView) (vpc, bgp int) {
	populated := map[string]bool{}
	for _, b := range nv.Blocks {
		populated[b.Group] = true
	}
	hasVPC := false
	var stmts []floorStmt
	for _, g := range n.Tree.All {
		hasVPC = hasVPC || g.Mode == topology.ModeVPC
		depth := strings.Count(g.Path, "/")
		for _, p := range nv.Prefixes[g.Path] {
			st := floorStmt{p: p, depth: depth, want: "default"}
			switch {
			case g.Mode != topology.ModeVPC:
			case g.IsLeaf() && populated[g.Path]:
				st.want = g.Path
			default:
				st.want = "any"
			}
			stmts = append(stmts, st)
		}
		if g.IsLeaf() && g.Mode == topology.ModeBGP && g.Advertise == topology.AdvertiseGroup {
			bgp = max(bgp, len(nv.Prefixes[g.Path]))
		}
	}
	if hasVPC {
		vpc = exactRouteCount(n.CIDR, stmts)
	}
	return vpc, bgp
}

// floorStmt says what a group prefix's addresses accept: a subnet's path,
// "any" or "default"; of two holding an address the longer prefix wins,
// then the deeper group.
type floorStmt struct {
	p     netip.Prefix
	depth int
	want  string
}

// exactRouteCount is the fewest routes inside cidr under which longest
// match gives every address what the statements say (no statement:
// "default", no route), found by trying, at every prefix, no route or a
// route to each target, for every target inherited from above.
func exactRouteCount(cidr netip.Prefix, stmts []floorStmt) int {
	const inf = 1 << 30
	targets := []string{""} // "": no route
	for _, st := range stmts {
		if st.want != "any" && st.want != "default" && !slices.Contains(targets, st.want) {
			targets = append(targets, st.want)
		}
	}
	// want is what p accepts when no statement lies strictly inside it.
	want := func(p netip.Prefix) string {
		best, w := -1, "default"
		for _, st := range stmts {
			if st.p.Contains(p.Addr()) && st.p.Bits() <= p.Bits() {
				if k := st.p.Bits()*1000 + st.depth; k > best {
					best, w = k, st.want
				}
			}
		}
		return w
	}
	split := func(p netip.Prefix) bool {
		for _, st := range stmts {
			if st.p.Bits() > p.Bits() && p.Contains(st.p.Addr()) {
				return true
			}
		}
		return false
	}
	memo := map[netip.Prefix][]int{}
	var cost func(p netip.Prefix) []int // per inherited target
	cost = func(p netip.Prefix) []int {
		if c, ok := memo[p]; ok {
			return c
		}
		c := make([]int, len(targets))
		if !split(p) {
			w := want(p)
			ok := func(h string) bool { return w == "any" || w == h || w == "default" && h == "" }
			for i, h := range targets {
				switch {
				case ok(h):
					c[i] = 0
				case w != "default":
					c[i] = 1
				default:
					c[i] = inf
				}
			}
		} else {
			lo, _ := p.Addr().Prefix(p.Bits() + 1)
			hi := netip.PrefixFrom(netx.AddOffset(lo.Addr(), netx.Size(lo), 0), p.Bits()+1)
			a, b := cost(lo), cost(hi)
			for i := range targets {
				best := a[i] + b[i]
				for t := 1; t < len(targets); t++ {
					best = min(best, 1+a[t]+b[t])
				}
				c[i] = min(best, inf)
			}
		}
		memo[p] = c
		return c
	}
	return cost(cidr.Masked())[0]
}

// pinnedIn reports whether g is pinned to a prefix of network n.
func pinnedIn(n *topology.Network, g *topology.Group) bool {
	return g.Pinned.IsValid() && netx.Covers(n.CIDR, g.Pinned)
}
