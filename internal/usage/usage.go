// Package usage reports on the allocation state as it stands: each
// network's prefixes, hosts, blocks and utilisation, and the routes at each
// level against their budgets. The server's /v1/plan and /v1/utilisation
// answer with it for the live state; terrane plan with it for a simulated
// one. It is pure: the allocator and the routing core in, a report out.
package usage

import (
	"fmt"
	"net/netip"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/topology"
)

// NetworkReport describes one network.
type NetworkReport struct {
	Name      string `json:"name"`
	CIDR      string `json:"cidr"`
	BlockSize int    `json:"block_size"`
	Capacity  uint64 `json:"capacity"`
	Allocated uint64 `json:"allocated"`
	// UsableShare is Allocated ÷ Capacity (under --fill: at the first failure).
	UsableShare float64 `json:"usable_share"`
	Hosts       int     `json:"hosts"`
	Blocks      int     `json:"blocks"`
	// FirstFailure is why allocation first failed, if it did.
	FirstFailure string `json:"first_failure,omitempty"`
	// OverBudget is set when the first failure was a route budget.
	OverBudget bool `json:"over_budget,omitempty"`
	// BudgetGroup is the group the allocator refused space (or a first
	// block) because its network's routes would then exceed a budget: the
	// group that pays for the budget. BudgetTarget is that budget's level
	// (vpc or bgp).
	BudgetGroup  string        `json:"budget_group,omitempty"`
	BudgetTarget string        `json:"budget_target,omitempty"`
	Routes       RouteReport   `json:"routes"`
	Groups       []GroupReport `json:"groups"`
}

// RouteReport counts routes at each level.
type RouteReport struct {
	// HostMax is the most routes towards other hosts on any one host (its
	// own endpoints' routes not counted).
	HostMax int `json:"host_max"`
	// HostMaxOptimal is the most of the fewest such routes any one host
	// can do with (the smallest set that still reaches every peer's
	// blocks through their owners).
	HostMaxOptimal int `json:"host_max_optimal"`
	// BGP is the most routes one ToR receives from its group's hosts.
	BGP       int `json:"bgp"`
	BGPBudget int `json:"bgp_budget"`
	// BGPOptimal is the most of the fewest routes any one ToR can learn.
	BGPOptimal int `json:"bgp_optimal"`
	// ToRs is what each bgp leaf group's ToR learns (BGP is the largest),
	// by group path.
	ToRs []ToRReport `json:"tors,omitempty"`
	// VPC is the route table size for the network's vpc groups.
	VPC       int `json:"vpc"`
	VPCBudget int `json:"vpc_budget"`
	// VPCFloor is the fewest routes the VPC table can have (its optimum:
	// every subnet aggregated as far as delivery allows).
	VPCFloor int `json:"vpc_floor"`
	// VPCDirectShare is the share of allocated addresses the VPC table
	// routes straight to their owner host.
	VPCDirectShare float64 `json:"vpc_direct_share"`
}

// ToRReport is the routes one ToR learns from its leaf group's hosts.
type ToRReport struct {
	Group  string `json:"group"`
	Routes int    `json:"routes"`
	// Optimum is the fewest routes this ToR can do with
	// (routing.ToROptimum).
	Optimum int `json:"optimum"`
}

// GroupReport describes one group in one network.
type GroupReport struct {
	Path     string   `json:"path"`
	Mode     string   `json:"mode"`
	Prefixes []string `json:"prefixes"`
	// Assignable is the number of addresses in the group's prefixes.
	Assignable uint64 `json:"assignable"`
	Hosts      int    `json:"hosts"`
	Blocks     int    `json:"blocks"`
	Allocated  uint64 `json:"allocated"`
	// ToRRoutes is how many routes the group's ToR learns from its hosts
	// (against RouteReport.BGPBudget); nil unless the group is a bgp leaf
	// group with hosts.
	ToRRoutes *int `json:"tor_routes,omitempty"`
}

// Describe reports on one network of an allocator as it stands: prefixes,
// hosts, blocks, utilisation and routes against the budgets. The server's
// utilisation and plan endpoints use it for the live state, terrane plan
// for the simulated one.
func Describe(a *ipam.Allocator, n *topology.Network, budgets ipam.Budgets) (NetworkReport, error) {
	nr := NetworkReport{Name: n.Name, CIDR: n.CIDR.String(), BlockSize: n.BlockBits}
	u := a.Usage(n.Name)
	nr.Capacity, nr.Allocated = u.Capacity, u.Allocated
	if u.Capacity > 0 {
		nr.UsableShare = float64(u.Allocated) / float64(u.Capacity)
	}
	nr.Blocks = len(a.Blocks(n.Name))
	nr.Hosts = len(a.Hosts())
	var err error
	if nr.Routes, err = routes(a, n, budgets); err != nil {
		return nr, err
	}
	tor := map[string]int{}
	for _, t := range nr.Routes.ToRs {
		tor[t.Group] = t.Routes
	}
	nr.Groups = Groups(a, n)
	for i, g := range nr.Groups {
		if k, ok := tor[g.Path]; ok {
			nr.Groups[i].ToRRoutes = &k
		}
	}
	return nr, nil
}

// RoutingInput is the routing core's view of one network of the allocator.
func RoutingInput(a *ipam.Allocator, n *topology.Network) routing.Input {
	eps := map[string][]netip.Addr{}
	for _, e := range a.Endpoints() {
		if e.Network == n.Name {
			eps[e.Host] = append(eps[e.Host], e.Addr)
		}
	}
	return routing.InputFrom(n, a.Hosts(), a.Blocks(n.Name), a.GroupPrefixes(n.Name), eps)
}

// routes counts the routes at each level: the fabric's (fabric) and each
// host's towards its L2 peers.
func routes(a *ipam.Allocator, n *topology.Network, b ipam.Budgets) (RouteReport, error) {
	in := RoutingInput(a, n)
	rr := RouteReport{BGPBudget: b.BGP, VPCBudget: b.VPC}
	for _, h := range in.Hosts {
		rs, err := routing.HostRoutes(in, h.Name)
		if err != nil {
			return rr, fmt.Errorf("network %s: routes of host %s: %w", n.Name, h.Name, err)
		}
		peers := 0
		for _, r := range rs {
			if !r.Local {
				peers++
			}
		}
		rr.HostMax = max(rr.HostMax, peers)
		opt, err := routing.PeerRoutesOptimum(in, h.Name)
		if err != nil {
			return rr, fmt.Errorf("network %s: routes of host %s: %w", n.Name, h.Name, err)
		}
		rr.HostMaxOptimal = max(rr.HostMaxOptimal, opt)
	}
	f := fabric(in, n, b)
	rr.ToRs = f.ToRs
	for _, t := range f.ToRs {
		rr.BGP = max(rr.BGP, t.Routes)                // routing.MaxToRRoutes, from the same map
		rr.BGPOptimal = max(rr.BGPOptimal, t.Optimum) // routing.MaxToROptimum, from the same counts
	}
	if f.VPC {
		rr.VPC, rr.VPCDirectShare = f.VPCRoutes, f.VPCDirectShare
		rr.VPCFloor = routing.MinVPCRoutes(in)
	}
	return rr, nil
}
