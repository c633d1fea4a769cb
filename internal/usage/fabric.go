package usage

import (
	"maps"
	"math"
	"slices"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/topology"
)

// FabricReport is one network's use of the fabric's route budgets: each
// ToR's routes and the VPC route table's, counted as Describe counts them
// (routing.ToRRoutes, routing.VPCTable), without the per-host route
// figures Describe also computes (the costly part at thousands of hosts).
// The server's /metrics reports it on every scrape.
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

// ToRReport is the routes one bgp leaf group's ToR learns.
type ToRReport struct {
	Group  string `json:"group"`
	Routes int    `json:"routes"`
}

// Fabric reports on the route budgets of network n as the allocator
// stands.
func Fabric(a *ipam.Allocator, n *topology.Network, b ipam.Budgets) FabricReport {
	in := RoutingInput(a, n)
	fr := FabricReport{BGPBudget: b.BGP, VPCBudget: b.VPC}
	tor := routing.ToRRoutes(in)
	for _, g := range slices.Sorted(maps.Keys(tor)) {
		fr.ToRs = append(fr.ToRs, ToRReport{Group: g, Routes: len(tor[g])})
	}
	if hasVPC(n) {
		fr.VPC = true
		v := vpcTable(in, b)
		fr.VPCRoutes, fr.VPCDirectShare = len(v.Routes), v.DirectShare
	}
	return fr
}

func hasVPC(n *topology.Network) bool {
	return slices.ContainsFunc(n.Tree.All, func(g *topology.Group) bool { return g.Mode == topology.ModeVPC })
}

// vpcTable is the table the reconciler writes for the network within the
// VPC budget (none: unbounded).
func vpcTable(in routing.Input, b ipam.Budgets) routing.VPCResult {
	budget := b.VPC
	if budget <= 0 {
		budget = math.MaxInt // unbounded
	}
	return routing.VPCTable(in, budget)
}
