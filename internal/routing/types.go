// Package routing computes, from one network's allocation state, the routes
// each target must carry: a host's kernel routes, a host's BGP
// advertisements, and a cloud VPC route table under its route budget. It is
// pure: state in, sorted route sets out; the same input always gives the same
// output.
package routing

import (
	"net/netip"

	"github.com/terrane-net/terrane/internal/topology"
)

// Input is the allocation state of one network, as routing needs it.
type Input struct {
	Hosts  []Host
	Groups []Group
}

// Host is one host of the network.
type Host struct {
	Name string
	IP   netip.Addr
	// Group is the path of the host's leaf group ("zone-a/rack-1").
	Group string
	// Segment names the host's L2 segment: hosts with the same non-empty
	// Segment reach each other's blocks directly. Empty: no L2 peers.
	Segment   string
	Mode      topology.Mode      // effective routing mode of the leaf group
	Advertise topology.Advertise // for bgp: blocks or group prefixes
	Blocks    []netip.Prefix     // every block the host owns in this network
	Endpoints []netip.Addr       // addresses allocated on this host
}

// Group is one group of the tree with the prefixes it owns in the network.
type Group struct {
	Path     string
	Parent   string // "" at the top
	Mode     topology.Mode
	Prefixes []netip.Prefix
}

// Route is one kernel route on a host.
type Route struct {
	Dst netip.Prefix
	// Via is the next hop: the peer host's address. Invalid for a local
	// endpoint, which is reached through its own interface.
	Via netip.Addr
	// Host names the peer (or, for a local endpoint, the host itself).
	Host  string
	Local bool
}

// VPCRoute is one entry of a cloud route table. Entries may overlap; the
// cloud sends an address by the longest match.
type VPCRoute struct {
	Dst netip.Prefix
	// Host is the target when the route is direct (it delivers every
	// block the route wins for), or the only host with blocks in Group.
	Host string
	// Group is set when the route aggregates a subnet (a vpc leaf group):
	// any healthy host of the subnet is its target and forwards to its L2
	// peers.
	Group string
}

// VPCResult is a VPC route set computed under a budget.
type VPCResult struct {
	Routes []VPCRoute
	Budget int
	// Fits is false when even the optimum (MinVPCRoutes) exceeds the
	// budget; Routes is then the optimum.
	Fits bool
	// DirectShare is the share of allocated addresses (of hosts in vpc
	// groups) whose route targets their owner host. With no endpoint known
	// (pods are node-local), the share of the hosts' block addresses; 1
	// when there are no blocks either.
	DirectShare float64
}
