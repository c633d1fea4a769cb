package ipam

import (
	"net/netip"
	"slices"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// freeList is a group's free space — its prefixes minus its blocks — as the
// minimal cover, sorted. Claims and releases update it in O(log) pieces
// instead of rebuilding it from every block of the group.
type freeList []netip.Prefix

// claim removes block p, which lies inside one free prefix.
func (f freeList) claim(p netip.Prefix) freeList {
	i, ok := f.containing(p)
	if !ok {
		return nil // caller rebuilds
	}
	rest := netx.Subtract([]netip.Prefix{f[i]}, p)
	out := slices.Concat(f[:i], rest, f[i+1:])
	if out == nil {
		out = freeList{} // empty, but known
	}
	return out
}

// release adds block p back, merging it with its buddy while the buddy is
// wholly free.
func (f freeList) release(p netip.Prefix) freeList {
	for {
		bud, ok := netx.Buddy(p)
		if !ok {
			break
		}
		j, found := slices.BinarySearchFunc(f, bud, netx.Less)
		if !found {
			break
		}
		f = slices.Delete(f, j, j+1)
		p = netx.Parent(p)
	}
	j, _ := slices.BinarySearchFunc(f, p, netx.Less)
	return slices.Insert(f, j, p)
}

// containing finds the free prefix that covers p.
func (f freeList) containing(p netip.Prefix) (int, bool) {
	j, _ := slices.BinarySearchFunc(f, p, netx.Less)
	for _, i := range []int{j, j - 1} {
		if i >= 0 && i < len(f) && netx.Covers(f[i], p) {
			return i, true
		}
	}
	return 0, false
}

// freeIn returns g's free list, computing it when no up-to-date one is
// cached.
func (ns *netState) freeIn(g *topology.Group) freeList {
	if f, ok := ns.free[g]; ok {
		return f
	}
	var blocks []netip.Prefix
	for p, b := range ns.blocks {
		if b.group == g {
			blocks = append(blocks, p)
		}
	}
	f := freeList(netx.Subtract(ns.owned[g], blocks...))
	ns.free[g] = f
	return f
}

// Keeping the cache in step; apply calls these.
func (ns *netState) freeClaimed(g *topology.Group, p netip.Prefix) {
	if f, ok := ns.free[g]; ok {
		if f = f.claim(p); f == nil {
			delete(ns.free, g)
		} else {
			ns.free[g] = f
		}
	}
}

func (ns *netState) freeReleased(g *topology.Group, p netip.Prefix) {
	if f, ok := ns.free[g]; ok {
		ns.free[g] = f.release(p)
	}
}
