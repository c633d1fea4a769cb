package usage

import (
	"maps"
	"math"
	"slices"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/topology"
)

// Groups reports on each group of network n, in the tree's order: the
// rows of Describe's Groups, without its route figures (Describe adds
// them). The server's /metrics reports them on every scrape.
func Groups(a *ipam.Allocator, n *topology.Network) []GroupReport {
	var out []GroupReport
	prefixes := a.GroupPrefixes(n.Name)
	for _, g := range n.Tree.All {
		gh, gb, galloc := a.GroupUsage(n.Name, g.Path)
		gr := GroupReport{Path: g.Path, Mode: g.Mode.String(), Prefixes: []string{}, Hosts: gh, Blocks: gb, Allocated: galloc}
		for _, p := range prefixes[g.Path] {
			gr.Prefixes = append(gr.Prefixes, p.String())
			gr.Assignable = netx.AddSat(gr.Assignable, netx.Size(p))
		}
		out = append(out, gr)
	}
	return out
}

// FabricReport is one network's use of the fabric's route budgets: each
// ToR's routes and the VPC route table's (routing.ToRRoutes,
// routing.VPCTable under the budget), the part of Describe's route figures
// without the per-host ones (the costly part at thousands of hosts).
// Describe's come from it; the server's /metrics reports it on every
// scrape.
type FabricReport struct {
	// ToRs are the bgp leaf groups' ToRs, by group path.
	ToRs      []ToRReport `json:"tors"`
	BGPBudget int         `json:"bgp_budget"`
	// VPC is set when the network has vpc groups.
	VPC            bool    `json:"vpc"`
	VPCRoutes      int     `json:"vpc_routes"`
	VPCBudget      int     `json:"vpc_budget"`
	VPCDirectShare float64 `json:"vpc_direct_share"`
}

// Fabric reports on the route budgets of network n as the allocator
// stands.
func Fabric(a *ipam.Allocator, n *topology.Network, b ipam.Budgets) FabricReport {
	return fabric(RoutingInput(a, n), n, b)
}

func fabric(in routing.Input, n *topology.Network, b ipam.Budgets) FabricReport {
	fr := FabricReport{BGPBudget: b.BGP, VPCBudget: b.VPC}
	tor := routing.ToRRoutes(in)
	for _, g := range slices.Sorted(maps.Keys(tor)) {
		fr.ToRs = append(fr.ToRs, ToRReport{Group: g, Routes: len(tor[g]), Optimum: routing.ToROptimum(in, g)})
	}
	if slices.ContainsFunc(n.Tree.All, func(g *topology.Group) bool { return g.Mode == topology.ModeVPC }) {
		budget := b.VPC
		if budget <= 0 {
			budget = math.MaxInt // unbounded, as Describe
		}
		v := routing.VPCTable(in, budget) // what the reconciler writes
		fr.VPC, fr.VPCRoutes, fr.VPCDirectShare = true, len(v.Routes), v.DirectShare
	}
	return fr
}
