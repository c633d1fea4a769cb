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
// route budget: the smallest table (ORTC, see netx.MinimalRoutes) that sends
// every block address of a table host to a host that can deliver it, with
// as many subnets as the budget allows held to direct routes.
//
// Who can deliver an address: its owner, and — when the owner's leaf vpc
// group is a cloud subnet whose hosts share one L2 segment (InputFrom
// gives them the leaf as their segment; a host without one is taken to be
// on it) — any host of that subnet, which routes its peers' blocks
// directly (HostRoutes). Never a host of another subnet: it could only
// hand the traffic back to the table, a loop. Space of vpc groups that no
// block holds yet is free (a route may cover it); blocks of hosts outside
// the table and space of other groups must match no route. Routes may
// overlap: the cloud picks the longest match.
//
// The budget: first the smallest table with every address routed to its
// owner (direct share 1). While that exceeds the budget, subnets are let
// take their own aggregates — in the order of what each saves alone
// (ties: path), the shortest prefix of that order that fits — and with
// every subnet let the table is the optimum (MinVPCRoutes); when even that
// exceeds the budget Fits is false and the optimum is returned.
//
// A table host has Mode vpc and a vpc group at or above its leaf group.
func VPC(in Input, budget int) VPCResult {
	p := newVPCProblem(in)
	routes := p.solve(budget)
	return VPCResult{
		Routes:      routes,
		Budget:      budget,
		Fits:        len(routes) <= budget,
		DirectShare: directShare(routes, p.hosts),
	}
}

// VPCTable is the set a table of limit routes is given: VPC(in, limit-1)
// when that fits, so one route stays free and every change can be made
// before it breaks (a split aggregate's routes are all in place before it
// goes); otherwise VPC(in, limit), where a change that splits an aggregate
// at the full table leaves its destination unrouted for one call. Its
// Budget is limit either way.
func VPCTable(in Input, limit int) VPCResult {
	if limit > 1 {
		if spare := VPC(in, limit-1); spare.Fits {
			spare.Budget = limit
			return spare
		}
	}
	return VPC(in, limit)
}

// MinVPCRoutes is the fewest routes any VPC table for in can have, every
// subnet aggregated as far as delivery allows: VPC(in, b).Fits holds
// exactly when b >= MinVPCRoutes(in).
func MinVPCRoutes(in Input) int {
	p := newVPCProblem(in)
	return netx.MinimalRouteCount(p.rules(p.allSubnets()))
}

// vpcProblem is a VPC table as ORTC rules: targets 0..len(hosts)-1 are the
// table hosts (preferred: a direct route), the rest the subnets.
type vpcProblem struct {
	hosts   []*vpcHost // table hosts, sorted by name
	subnets []*vpcSubnet
	space   []netx.RouteRule // what each group's prefixes accept
	others  []netip.Prefix
}

type vpcHost struct {
	name      string
	blocks    []netip.Prefix
	endpoints []netip.Addr
	subnet    *vpcSubnet // nil: only the host delivers its blocks
}

type vpcSubnet struct {
	path   string
	target int
	owners []string // table hosts of the subnet with blocks, sorted
}

// blockRank ranks a block's rule above every group's.
const blockRank = math.MaxInt32

func newVPCProblem(in Input) *vpcProblem {
	gx := indexGroups(in.Groups)
	parents := map[string]bool{}
	for _, g := range in.Groups {
		parents[g.Parent] = true
	}
	p := &vpcProblem{space: groupSpace(gx, func(g *Group) bool { return g.Mode == topology.ModeVPC })}

	hosts := sortedHosts(in.Hosts)
	// A subnet is a leaf vpc group whose hosts are all table hosts on one
	// segment. A host of a vpc leaf without a segment is on the leaf's, as
	// InputFrom gives it.
	type leafInfo struct {
		segment string
		ok      bool
	}
	leaves := map[string]*leafInfo{}
	table := make([]bool, len(hosts))
	for i, h := range hosts {
		table[i] = h.Mode == topology.ModeVPC && slices.ContainsFunc(gx.chain(h.Group), func(g *Group) bool { return g.Mode == topology.ModeVPC })
		g := gx[h.Group]
		seg := h.Segment
		if seg == "" {
			seg = h.Group
		}
		l := leaves[h.Group]
		if l == nil {
			l = &leafInfo{segment: seg, ok: g != nil && g.Mode == topology.ModeVPC && !parents[h.Group]}
			leaves[h.Group] = l
		}
		if !table[i] || seg != l.segment {
			l.ok = false
		}
	}
	bySubnet := map[string]*vpcSubnet{}
	for i, h := range hosts {
		if !table[i] {
			p.others = append(p.others, h.Blocks...)
			continue
		}
		vh := &vpcHost{name: h.Name, blocks: h.Blocks, endpoints: h.Endpoints}
		if leaves[h.Group].ok {
			s := bySubnet[h.Group]
			if s == nil {
				s = &vpcSubnet{path: h.Group}
				bySubnet[h.Group] = s
			}
			if len(h.Blocks) > 0 {
				s.owners = append(s.owners, h.Name)
			}
			vh.subnet = s
		}
		p.hosts = append(p.hosts, vh)
	}
	for _, s := range bySubnet {
		p.subnets = append(p.subnets, s)
	}
	slices.SortFunc(p.subnets, func(a, b *vpcSubnet) int { return strings.Compare(a.path, b.path) })
	for i, s := range p.subnets {
		s.target = len(p.hosts) + i
	}
	return p
}

// sortedHosts orders hosts by name, then address, so targets are numbered
// the same whatever the input order.
func sortedHosts(in []Host) []*Host {
	hosts := make([]*Host, len(in))
	for i := range in {
		hosts[i] = &in[i]
	}
	slices.SortFunc(hosts, func(a, b *Host) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), a.IP.Compare(b.IP))
	})
	return hosts
}

// groupSpace is the rules of every group's prefixes: free space (netx.WantAny)
// where free says so, else space that must keep the default. A deeper
// group's prefix wins over its ancestors' where both hold an address.
func groupSpace(gx groupIndex, free func(*Group) bool) []netx.RouteRule {
	var out []netx.RouteRule
	for _, g := range gx {
		kind := netx.WantDefault
		if free(g) {
			kind = netx.WantAny
		}
		depth := len(gx.chain(g.Path))
		for _, q := range g.Prefixes {
			if q.IsValid() {
				out = append(out, netx.RouteRule{Prefix: q.Masked(), Want: kind, Rank: depth})
			}
		}
	}
	return out
}

func (p *vpcProblem) allSubnets() map[*vpcSubnet]bool {
	all := map[*vpcSubnet]bool{}
	for _, s := range p.subnets {
		all[s] = true
	}
	return all
}

// rules are the table's ORTC rules with the subnets in let aggregate.
func (p *vpcProblem) rules(let map[*vpcSubnet]bool) []netx.RouteRule {
	out := slices.Clone(p.space)
	for i, h := range p.hosts {
		ts := []int{i}
		if h.subnet != nil && let[h.subnet] {
			ts = append(ts, h.subnet.target)
		}
		for _, b := range h.blocks {
			if b.IsValid() {
				out = append(out, netx.TargetsRule(b.Masked(), blockRank, ts...))
			}
		}
	}
	for _, b := range p.others {
		if b.IsValid() {
			out = append(out, netx.RouteRule{Prefix: b.Masked(), Want: netx.WantDefault, Rank: blockRank})
		}
	}
	return solvable(out)
}

func (p *vpcProblem) solve(budget int) []VPCRoute {
	none := map[*vpcSubnet]bool{}
	direct := netx.MinimalRouteCount(p.rules(none))
	if direct <= budget || len(p.subnets) == 0 {
		return p.routes(none)
	}
	// What each subnet saves alone; letting more subnets aggregate never
	// costs routes (it only widens what addresses accept), so the first k
	// of this order fit for every k past the smallest that does.
	saving := map[*vpcSubnet]int{}
	for _, s := range p.subnets {
		saving[s] = direct - netx.MinimalRouteCount(p.rules(map[*vpcSubnet]bool{s: true}))
	}
	order := slices.Clone(p.subnets)
	slices.SortStableFunc(order, func(a, b *vpcSubnet) int { return saving[b] - saving[a] })
	first := func(k int) map[*vpcSubnet]bool {
		let := map[*vpcSubnet]bool{}
		for _, s := range order[:k] {
			let[s] = true
		}
		return let
	}
	lo, hi := 1, len(order) // the answer lies in [lo, hi]
	for lo < hi {
		mid := (lo + hi) / 2
		if netx.MinimalRouteCount(p.rules(first(mid))) <= budget {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return p.routes(first(lo))
}

func (p *vpcProblem) routes(let map[*vpcSubnet]bool) []VPCRoute {
	var out []VPCRoute
	for _, r := range netx.MinimalRoutes(p.rules(let), true) {
		if r.Target < len(p.hosts) {
			out = append(out, VPCRoute{Dst: r.Prefix, Host: p.hosts[r.Target].name})
			continue
		}
		s := p.subnets[r.Target-len(p.hosts)]
		vr := VPCRoute{Dst: r.Prefix, Group: s.path}
		if len(s.owners) == 1 {
			vr.Host = s.owners[0]
		}
		out = append(out, vr)
	}
	return out
}

// directShare is the share of the table hosts' endpoints whose route (the
// longest match, as the cloud picks it) targets their owner. With no
// endpoint known (pods are node-local), the share of the hosts' block
// addresses; 1 when there are no blocks either.
func directShare(routes []VPCRoute, hosts []*vpcHost) float64 {
	m := newVPCMatcher(routes)
	total, direct := 0, 0
	for _, h := range hosts {
		for _, a := range h.endpoints {
			total++
			if r, ok := m.longest(hostPrefix(a)); ok && r.Host == h.name {
				direct++
			}
		}
	}
	if total > 0 {
		return float64(direct) / float64(total)
	}
	var size, straight float64
	for _, h := range hosts {
		for _, b := range h.blocks {
			n := math.Exp2(float64(b.Addr().BitLen() - b.Bits()))
			size += n
			if r, ok := m.longest(b); ok && r.Host == h.name {
				straight += n
			}
		}
	}
	if size == 0 {
		return 1
	}
	return straight / size
}

// vpcMatcher finds the longest route containing a prefix.
type vpcMatcher struct {
	byDst map[netip.Prefix]VPCRoute
	lens  []int // distinct route lengths, longest first
}

func newVPCMatcher(routes []VPCRoute) vpcMatcher {
	m := vpcMatcher{byDst: make(map[netip.Prefix]VPCRoute, len(routes))}
	for _, r := range routes {
		if _, dup := m.byDst[r.Dst]; !dup {
			m.byDst[r.Dst] = r
		}
		m.lens = append(m.lens, r.Dst.Bits())
	}
	slices.Sort(m.lens)
	slices.Reverse(m.lens)
	m.lens = slices.Compact(m.lens)
	return m
}

// longest is the most specific route containing all of q.
func (m vpcMatcher) longest(q netip.Prefix) (VPCRoute, bool) {
	for _, l := range m.lens {
		if l > q.Bits() {
			continue
		}
		if p, err := q.Addr().Prefix(l); err == nil {
			if r, ok := m.byDst[p]; ok {
				return r, true
			}
		}
	}
	return VPCRoute{}, false
}
