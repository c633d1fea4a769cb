package ipam

import (
	"net/netip"
	"slices"

	"go4.org/netipx"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// growSubnet grows a cloud subnet (a vpc leaf group). A subnet is a route
// target of its own in the VPC table: no level above it aggregates, and
// every prefix a populated subnet owns counts as its own however little
// of it holds blocks (vpcFloor). What keeps the table small is therefore
// that each subnet's space stays a few aligned prefixes, and that the
// busiest subnet's space can be one aggregate with the others as
// exceptions inside it. Other subnets' growth room (growthRoom) is given
// up one depth at a time — first space outside every other subnet's home,
// then outside the lower half of each home and each buddy, then outside
// ever smaller leading parts of each buddy, so a quiet subnet keeps the
// space next to its own the longest. At each depth:
//
//  1. free space outside the room, nearest level first, the network's own
//     padding included;
//  2. (with steal) unused space of other subtrees that no other leaf owns,
//     outside the room, nearest first.
//
// Then free space anywhere, and last (with steal) unused space of other
// subtrees as any leaf steals it, a subnet's own included.
//
// A subnet asks for a quarter of its largest prefix (its buddy, when free,
// doubles it whole): each new prefix is a route, and a subnet holding far
// more than it uses leaves its neighbours nothing without a route of their
// own. Taking space from the network's padding, the vpc groups on the path
// take the whole free prefix around it: space no group owns must keep the
// table's default (routing.VPC), so a piece taken from it would leave the
// busiest subnet's space in islands that no aggregate can span.
func (a *Allocator) growSubnet(tx *tx, ns *netState, leaf *topology.Group, path []*topology.Group, target int, steal bool,
	attempt func(do func() error) bool, try func(q netip.Prefix, receivers, donors []*topology.Group) bool) bool {
	bits := ns.net.BlockBits
	fromFree := func(room []netip.Prefix) bool {
		for lvl := 1; lvl < len(path); lvl++ {
			free := minus(a.freeAt(ns, path[lvl]), room)
			if len(free.Prefixes()) == 0 {
				continue
			}
			for _, q := range a.freeCandidates(ns, free, leaf, path[lvl], min(target+2, bits), bits) {
				whole, ok := largestAround(free, q)
				if lvl == 1 || !ok || whole == q {
					if try(q, path[:lvl], nil) {
						return true
					}
					continue
				}
				if attempt(func() error {
					if err := a.transfer(tx, ns, whole, path[1:lvl], nil); err != nil {
						return err
					}
					return a.transfer(tx, ns, q, path[:1], nil)
				}) {
					return true
				}
			}
		}
		return false
	}
	// Each pass reserves less of the other subnets' room: all of it, then
	// the lower half of each buddy, its lower quarter, ... down to one block.
	owned := a.leavesOwned(ns, leaf)
	for depth := 0; ; depth++ {
		room, more := a.growthRoom(ns, leaf, depth)
		if fromFree(room) {
			return true
		}
		if steal {
			exclude := append(slices.Clone(room), owned...)
			for lvl := 1; lvl < len(path); lvl++ {
				if a.stealExcept(tx, ns, path, lvl, exclude, try) && (lvl == 1 || fromFree(room)) {
					return true
				}
			}
		}
		if !more {
			break
		}
	}
	if fromFree(nil) {
		return true
	}
	if !steal {
		return false
	}
	for lvl := 1; lvl < len(path); lvl++ {
		if a.steal(tx, ns, path, lvl, try) && (lvl == 1 || fromFree(nil)) {
			return true
		}
	}
	return false
}

// leavesOwned is what every leaf other than leaf owns.
func (a *Allocator) leavesOwned(ns *netState, leaf *topology.Group) []netip.Prefix {
	var out []netip.Prefix
	for _, g := range ns.net.Tree.Leaves {
		if g != leaf {
			out = append(out, ns.owned[g]...)
		}
	}
	return out
}

// stealExcept is steal limited to unused space outside exclude (steal is
// it with none).
func (a *Allocator) stealExcept(tx *tx, ns *netState, path []*topology.Group, lvl int, exclude []netip.Prefix, try func(q netip.Prefix, receivers, donors []*topology.Group) bool) bool {
	type cand struct {
		q     netip.Prefix
		donor *topology.Group
		cost  int
	}
	var best *cand
	for _, c := range children(ns.net, path[lvl]) {
		if c == path[lvl-1] {
			continue
		}
		q, ok := largestUnused(minus(a.unusedIn(ns, c), exclude))
		if !ok || q.Bits() > ns.net.BlockBits {
			continue
		}
		mark := len(tx.changes)
		if err := a.transfer(tx, ns, q, path[lvl-1:lvl], subtree(c)); err != nil {
			tx.rollbackTo(mark)
			continue
		}
		f := a.routeFloors(ns)
		tx.rollbackTo(mark)
		cost := f.vpc + f.bgp
		if best == nil || cost < best.cost || (cost == best.cost && q.Bits() < best.q.Bits()) {
			best = &cand{q, c, cost}
		}
	}
	if best == nil {
		return false
	}
	return try(best.q, path[lvl-1:lvl], subtree(best.donor))
}

// growthRoom is, for every leaf of the network other than leaf, where it
// grows next as few prefixes: at depth 0 its whole home; at depth 1 the
// lower half of its home and the buddy of each prefix it owns inside its
// home; at depth d > 1 only the first 1/2^(d-1) of each such buddy. more
// reports that a deeper room is smaller still. (Beyond its home a leaf
// reserves nothing: the buddy of a busy subnet's prefix is a neighbour's
// home.)
func (a *Allocator) growthRoom(ns *netState, leaf *topology.Group, depth int) (room []netip.Prefix, more bool) {
	bits := ns.net.BlockBits
	for _, g := range ns.net.Tree.Leaves {
		if g == leaf || g.Pinned.IsValid() {
			continue
		}
		h, ok := ns.homes[g]
		if !ok {
			continue
		}
		switch {
		case depth == 0:
			room, more = append(room, h), true
			continue
		case depth == 1 && h.Bits() < bits:
			room = append(room, netip.PrefixFrom(h.Addr(), h.Bits()+1))
		}
		for _, p := range ns.owned[g] {
			bud, ok := netx.Buddy(p)
			if !ok || p.Bits() > bits || !netx.Covers(h, bud) {
				continue
			}
			if b := bud.Bits() + max(depth-1, 0); b <= bits {
				room = append(room, netip.PrefixFrom(bud.Addr(), b))
				more = more || b < bits
			}
		}
	}
	return room, more
}

// largestAround is the largest prefix of s that holds q.
func largestAround(s *netipx.IPSet, q netip.Prefix) (netip.Prefix, bool) {
	for _, p := range s.Prefixes() {
		if netx.Covers(p, q) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}
