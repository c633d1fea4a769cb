package routing

import (
	"net/netip"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/topology"
)

// InputFrom is the routing core's view of network n built from listings:
// the hosts, n's blocks, n's group prefixes (by group path) and the
// endpoint addresses by host (those routes need; nil for none). Agents
// build it from a server snapshot, the planner from its allocator, so both
// compute the same routes. Hosts outside n are left out. A host's IP is its
// address of n's family: for an IPv6 network its IPv6 address (HostInfo.IP6,
// or IP when that is IPv6), for an IPv4 network its IP; invalid when it has
// none.
func InputFrom(n *topology.Network, hosts []ipam.HostInfo, blocks []ipam.BlockInfo, prefixes map[string][]netip.Prefix, eps map[string][]netip.Addr) Input {
	var in Input
	byHost := map[string][]netip.Prefix{}
	for _, b := range blocks {
		byHost[b.Host] = append(byHost[b.Host], b.Prefix)
	}
	for _, h := range hosts {
		g := n.Tree.Group(h.Groups[n.Name])
		if g == nil {
			continue
		}
		rh := Host{Name: h.Name, IP: addrOfFamily(h, n.CIDR.Addr().Is4()), Group: g.Path, Mode: g.Mode, Advertise: g.Advertise, Blocks: byHost[h.Name], Endpoints: eps[h.Name]}
		if seg := g.Segment(); seg != nil {
			rh.Segment = seg.Path
		} else if g.Mode == topology.ModeVPC && len(g.Children) == 0 {
			// A leaf vpc group is a cloud subnet: its hosts are on-link to
			// each other, and the one a subnet aggregate targets delivers
			// to the others directly (VPC relies on it).
			rh.Segment = g.Path
		}
		in.Hosts = append(in.Hosts, rh)
	}
	for _, g := range n.Tree.All {
		rg := Group{Path: g.Path, Mode: g.Mode, Prefixes: prefixes[g.Path]}
		if g.Parent != nil {
			rg.Parent = g.Parent.Path
		}
		in.Groups = append(in.Groups, rg)
	}
	return in
}

// addrOfFamily is h's address of the family (IPv4 when v4), or the zero
// Addr.
func addrOfFamily(h ipam.HostInfo, v4 bool) netip.Addr {
	for _, a := range []netip.Addr{h.IP, h.IP6} {
		if a.IsValid() && a.Unmap().Is4() == v4 {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}
