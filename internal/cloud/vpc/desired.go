// Package vpc keeps cloud VPC route tables equal to what the routing core
// computes for the hosts of `vpc` groups. It owns three things: the pure
// plan (Desired: the route set of each table under its budget, per address
// family, each route mapped to an instance; Diff: the ordered API calls
// that turn the table into it without exceeding the budget), the
// reconciler that applies it through a Cloud (backing off on throttling,
// reporting route-limit errors), and the --vpc-config file format.
// Design and invariants: docs/design/vpc.md.
package vpc

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/topology"
)

// Snapshot is the cluster state the plan reads: every network's routing
// input, the hosts' instances and their health.
type Snapshot struct {
	// Revision is the store revision the state was read at.
	Revision int64
	Networks []Network
	// Instances maps a host to its cloud instance (from its label).
	Instances map[string]string
	// Healthy lists the hosts whose agent checked in recently. nil means
	// health is unknown: every host counts as healthy.
	Healthy map[string]bool
}

// Network is one network's routing input.
type Network struct {
	Name  string
	CIDR  netip.Prefix
	Input routing.Input
}

// TableSpec is one route table the reconciler keeps.
type TableSpec struct {
	ID string
	// Groups are the group paths whose hosts' addresses the table routes
	// to; empty: every vpc group.
	Groups []string
	// Budget4 and Budget6 bound the table's IPv4 and IPv6 routes.
	Budget4, Budget6 int
}

// Budget is the spec's budget for an address family (4 or 6).
func (s TableSpec) Budget(family int) int {
	if family == 6 {
		return s.Budget6
	}
	return s.Budget4
}

// DesiredRoute is one route the table should hold.
type DesiredRoute struct {
	Dst      netip.Prefix
	Instance string
	// Host is the target host; Group the aggregated group ("" when the
	// route is one host's own blocks).
	Host, Group string
}

// FamilyPlan is a table's route set for one address family.
type FamilyPlan struct {
	Family int // 4 or 6
	Budget int
	// Routes is the desired set, sorted by destination. When Fits is
	// false it is empty and the table is left as it is.
	Routes []DesiredRoute
	// Needed is how many routes the routing core's set holds.
	Needed int
	Fits   bool
	// DirectShare is the routing core's: the share of allocated endpoint
	// addresses routed straight to their owner (1 when none are known).
	DirectShare float64
	// DirectBlockShare is the share of claimed block addresses routed
	// straight to their owner host (1 when no blocks are claimed).
	DirectBlockShare float64
	// Uncovered counts the routing core's routes left out for want of a
	// target instance.
	Uncovered int
}

// TablePlan is the desired state of one route table.
type TablePlan struct {
	ID       string
	Families []FamilyPlan
	// Instances are the table hosts' instances, sorted: each must have
	// its source/destination check disabled.
	Instances []string
	// Networks are the CIDRs of every network in the snapshot: a route
	// made by CreateRoute whose destination lies inside one is Terrane's.
	Networks []netip.Prefix
	// Problems are reasons some addresses are not routed.
	Problems []string
}

// Desired computes a table's route sets. actual is the table as the cloud
// reports it: an aggregate keeps its current target while that host stays
// healthy, so routes do not move when hosts join.
func Desired(spec TableSpec, snap Snapshot, actual []CloudRoute) TablePlan {
	tp := TablePlan{ID: spec.ID}
	current := map[netip.Prefix]string{}
	for _, r := range actual {
		if r.Origin == OriginCreateRoute && r.Instance != "" && !r.Blackhole {
			current[r.Dst] = r.Instance
		}
	}
	byInstance := map[string]string{}
	for h, i := range snap.Instances {
		byInstance[i] = h
	}
	found := map[string]bool{}
	instances := map[string]bool{}
	for _, family := range []int{4, 6} {
		var nets []Network
		for _, n := range snap.Networks {
			if (family == 4) == n.CIDR.Addr().Is4() {
				nets = append(nets, n)
			}
		}
		if len(nets) == 0 {
			continue
		}
		in := tableInput(nets, spec.Groups, found)
		fp := FamilyPlan{Family: family, Budget: spec.Budget(family)}
		res := routing.VPCTable(in, fp.Budget)
		fp.Needed, fp.Fits, fp.DirectShare = len(res.Routes), res.Fits, res.DirectShare
		fp.DirectBlockShare = directBlockShare(res.Routes, in)
		members := tableMembers(in)
		for _, h := range members.hosts {
			if inst := snap.Instances[h]; inst != "" {
				instances[inst] = true
			} else if members.owns[h] {
				tp.Problems = append(tp.Problems, fmt.Sprintf("host %s has no instance label: its blocks are not routed", h))
			}
		}
		if !res.Fits {
			tp.Problems = append(tp.Problems, fmt.Sprintf("IPv%d: %d routes needed at the most aggregation, over the budget of %d; the table is left as it is", family, len(res.Routes), fp.Budget))
		} else {
			for _, r := range res.Routes {
				d := DesiredRoute{Dst: r.Dst, Host: r.Host, Group: r.Group}
				if d.Host == "" {
					d.Host = chooseTarget(r.Dst, members.under(r.Group), snap, byInstance[current[r.Dst]])
					if d.Host != "" && snap.Healthy != nil && !snap.Healthy[d.Host] {
						tp.Problems = append(tp.Problems, fmt.Sprintf("%s: no healthy host in group %s; kept on %s", r.Dst, displayGroup(r.Group), d.Host))
					}
				}
				d.Instance = snap.Instances[d.Host]
				if d.Instance == "" {
					fp.Uncovered++
					if d.Host == "" {
						tp.Problems = append(tp.Problems, fmt.Sprintf("%s: no host of group %s has an instance label", r.Dst, displayGroup(r.Group)))
					}
					continue
				}
				d.Group = displayGroup(d.Group)
				fp.Routes = append(fp.Routes, d)
			}
		}
		tp.Families = append(tp.Families, fp)
		for _, n := range nets {
			tp.Networks = append(tp.Networks, n.CIDR)
		}
	}
	for _, g := range spec.Groups {
		if !found[g] {
			tp.Problems = append(tp.Problems, fmt.Sprintf("group %s is in no network of the topology", g))
		}
	}
	for i := range instances {
		tp.Instances = append(tp.Instances, i)
	}
	slices.Sort(tp.Instances)
	slices.Sort(tp.Problems)
	tp.Problems = slices.Compact(tp.Problems)
	return tp
}

// groupSep joins a network and a group path when several networks of one
// family share a table.
const groupSep = "\x00"

func displayGroup(g string) string {
	if _, path, ok := strings.Cut(g, groupSep); ok {
		return path
	}
	return g
}

// tableInput merges the networks of one family into one routing input
// restricted to the table's groups. A host outside them stays in the input
// as a non-member (its blocks still keep an overlapping group from being
// aggregated) but gets no route. With one network and no group filter the
// input is the network's own, so the table equals what `terrane plan`
// computes.
func tableInput(nets []Network, groups []string, found map[string]bool) routing.Input {
	var out routing.Input
	for _, n := range nets {
		rename := func(p string) string { return p }
		if len(nets) > 1 {
			rename = func(p string) string { return n.Name + groupSep + p }
		}
		parent := map[string]string{}
		for _, g := range n.Input.Groups {
			parent[g.Path] = g.Parent
		}
		// kept: groups at or under a table group; top: the table groups.
		kept := map[string]bool{}
		for _, g := range n.Input.Groups {
			if len(groups) == 0 {
				kept[g.Path] = true
				continue
			}
			for p, seen := g.Path, 0; p != "" && seen <= len(parent); p, seen = parent[p], seen+1 {
				if slices.Contains(groups, p) {
					kept[g.Path] = true
					found[p] = true
					break
				}
			}
		}
		for _, g := range n.Input.Groups {
			if !kept[g.Path] {
				continue
			}
			rg := g
			rg.Path = rename(g.Path)
			if len(groups) > 0 && slices.Contains(groups, g.Path) {
				rg.Parent = ""
			} else if rg.Parent != "" {
				rg.Parent = rename(g.Parent)
			}
			out.Groups = append(out.Groups, rg)
		}
		for _, h := range n.Input.Hosts {
			rh := h
			if kept[h.Group] {
				rh.Group = rename(h.Group)
			} else {
				rh.Group = ""
			}
			out.Hosts = append(out.Hosts, rh)
		}
	}
	return out
}

// members are the table hosts of an input: vpc hosts of a kept group.
type members struct {
	hosts []string            // sorted
	owns  map[string]bool     // hosts owning blocks
	chain map[string][]string // host → its group and the groups above
}

func tableMembers(in routing.Input) members {
	parent := map[string]string{}
	vpcGroup := map[string]bool{}
	for _, g := range in.Groups {
		parent[g.Path] = g.Parent
		vpcGroup[g.Path] = g.Mode == topology.ModeVPC
	}
	m := members{owns: map[string]bool{}, chain: map[string][]string{}}
	for _, h := range in.Hosts {
		if h.Group == "" || h.Mode != topology.ModeVPC {
			continue
		}
		var chain []string
		anyVPC := false
		for p, n := h.Group, 0; p != "" && n <= len(parent); p, n = parent[p], n+1 {
			chain = append(chain, p)
			anyVPC = anyVPC || vpcGroup[p]
		}
		if !anyVPC {
			continue
		}
		if _, dup := m.chain[h.Name]; !dup {
			m.hosts = append(m.hosts, h.Name)
		}
		m.chain[h.Name] = append(m.chain[h.Name], chain...)
		m.owns[h.Name] = m.owns[h.Name] || len(h.Blocks) > 0
	}
	slices.Sort(m.hosts)
	return m
}

// under lists the table hosts at or under group, sorted.
func (m members) under(group string) []string {
	var out []string
	for _, h := range m.hosts {
		if slices.Contains(m.chain[h], group) {
			out = append(out, h)
		}
	}
	return out
}

// chooseTarget picks the host an aggregate routes to: the current one
// while it is healthy, else the healthy candidate ranked first for this
// destination by rendezvous hashing (aggregates spread over hosts, and a
// host leaving moves only its own). With no healthy candidate the current
// target stays, else the ranking picks among all. Only hosts with an
// instance are candidates. "" when there are none.
func chooseTarget(dst netip.Prefix, hosts []string, snap Snapshot, current string) string {
	var all, healthy []string
	for _, h := range hosts {
		if snap.Instances[h] == "" {
			continue
		}
		all = append(all, h)
		if snap.Healthy == nil || snap.Healthy[h] {
			healthy = append(healthy, h)
		}
	}
	pool := healthy
	if len(pool) == 0 {
		pool = all
	}
	if current != "" && slices.Contains(pool, current) {
		return current
	}
	best, bestScore := "", uint64(0)
	for _, h := range pool {
		hf := fnv.New64a()
		hf.Write([]byte(dst.String()))
		hf.Write([]byte{0})
		hf.Write([]byte(h))
		if s := hf.Sum64(); best == "" || s > bestScore {
			best, bestScore = h, s
		}
	}
	return best
}

// directBlockShare is the share of the table hosts' block addresses whose
// route (longest match) targets their owner.
func directBlockShare(routes []routing.VPCRoute, in routing.Input) float64 {
	m := tableMembers(in)
	var total, direct uint64
	for _, h := range in.Hosts {
		if _, ok := m.chain[h.Name]; !ok || h.Group == "" {
			continue
		}
		for _, b := range h.Blocks {
			size := netx.Size(b)
			total = netx.AddSat(total, size)
			if r, ok := longestMatch(routes, b); ok && r.Host == h.Name {
				direct = netx.AddSat(direct, size)
			}
		}
	}
	if total == 0 {
		return 1
	}
	return float64(direct) / float64(total)
}

// longestMatch is the most specific route containing all of p.
func longestMatch(routes []routing.VPCRoute, p netip.Prefix) (routing.VPCRoute, bool) {
	var best routing.VPCRoute
	found := false
	for _, r := range routes {
		if r.Dst.Bits() <= p.Bits() && r.Dst.Contains(p.Addr()) && (!found || r.Dst.Bits() > best.Dst.Bits()) {
			best, found = r, true
		}
	}
	return best, found
}
