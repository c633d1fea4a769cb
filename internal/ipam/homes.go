package ipam

import (
	"net/netip"

	"github.com/terrane-net/terrane/internal/topology"
)

// growthRoom is how many times a leaf's first prefix may double inside its
// elastic home before it must take space from its parent.
const growthRoom = 4

// elasticHomes places leaf groups for elastic mode. Interior groups keep the
// static layout (they own their home prefix: it is their aggregate), but the
// leaf children of one parent are packed at the start of the parent's home,
// each with room to double growthRoom times. Packing keeps a group's used
// space low and its unused space in one piece at the far end, so when a
// busier sibling subtree must take space from it, it takes a few large
// prefixes instead of a sliver from every leaf (which would fragment both
// sides' aggregates). Static mode, pinned groups and vpc leaves keep the
// static layout.
func elasticHomes(n *topology.Network) map[*topology.Group]netip.Prefix {
	homes := make(map[*topology.Group]netip.Prefix, len(n.Homes))
	for g, h := range n.Homes {
		homes[g] = h
	}
	pack := func(parent netip.Prefix, kids []*topology.Group) {
		var need uint64
		for _, g := range kids {
			// Leaves of a vpc group are cloud subnets, whose addresses
			// only their own hosts deliver (see routing.VPC): they keep
			// the spread static layout, where each grows by doubling
			// into its own region as one prefix (one route, or one
			// exception under a neighbour's aggregate).
			if !g.IsLeaf() || g.Pinned.IsValid() || g.Mode == topology.ModeVPC {
				return
			}
			need += initialBlocks(g)
		}
		// The smallest region holding every leaf's first blocks, growthRoom
		// doublings over.
		need <<= growthRoom
		region := n.BlockBits
		for region > parent.Bits() && uint64(1)<<(n.BlockBits-region) < need {
			region--
		}
		r := netip.PrefixFrom(parent.Addr(), region)
		packed, errs := topology.Layout(r, n.BlockBits, kids, func(*topology.Group) netip.Prefix { return netip.Prefix{} })
		if len(errs) > 0 {
			return // keep the static layout
		}
		for g, h := range packed {
			homes[g] = h
		}
	}
	pack(n.CIDR, n.Tree.Groups)
	for _, g := range n.Tree.All {
		if !g.IsLeaf() {
			pack(n.Homes[g], g.Children)
		}
	}
	return homes
}

// initialBlocks is how many blocks a leaf starts with: room for its
// expected hosts, rounded up to a power of two.
func initialBlocks(g *topology.Group) uint64 {
	want := uint64(max(1, g.ExpectedHosts, len(g.Hosts)))
	n := uint64(1)
	for n < want {
		n <<= 1
	}
	return n
}
