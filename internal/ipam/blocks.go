package ipam

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// ClaimBlock claims one more block for host's agent in network, growing
// the host's leaf group first when it is full (elastic mode). Agents call it
// ahead of demand; the block is theirs to allocate in (IssuerAgent).
// AllocateEndpoint claims the server's own blocks when it needs one.
func (a *Allocator) ClaimBlock(hostName, network string) (netip.Prefix, []Change, error) {
	h, ns, err := a.hostNet(hostName, network)
	if err != nil {
		return netip.Prefix{}, nil, fmt.Errorf("claim block: %w", err)
	}
	tx := &tx{s: a.s}
	p, err := a.claimBlock(tx, ns, h, IssuerAgent)
	if err != nil {
		tx.rollback()
		return netip.Prefix{}, nil, fmt.Errorf("claim block for %s in %s: %w", hostName, network, err)
	}
	return p, tx.changes, nil
}

// ReleaseBlock gives an empty block back. Only its owner may release it.
// The server counts only its own endpoints: an agent's block is empty here
// even with pods in it, so the agent releases only blocks it has drained.
func (a *Allocator) ReleaseBlock(hostName, network string, p netip.Prefix) ([]Change, error) {
	_, ns, err := a.hostNet(hostName, network)
	if err != nil {
		return nil, fmt.Errorf("release block: %w", err)
	}
	b := ns.blocks[p]
	switch {
	case b == nil:
		return nil, fmt.Errorf("release block %s: %w: no such block in %s", p, ErrNotFound, network)
	case b.host != hostName:
		return nil, fmt.Errorf("release block %s: %w: it belongs to host %s, not %s", p, ErrInvalid, b.host, hostName)
	case b.count > 0:
		return nil, fmt.Errorf("release block %s: %w: it still holds %d endpoints; release them first", p, ErrConflict, b.count)
	}
	tx := &tx{s: a.s}
	if err := tx.do(blockRelease(b, network)); err != nil {
		return nil, err
	}
	return tx.changes, nil
}

func blockRelease(b *block, network string) Change {
	return Change{Kind: BlockReleased, Network: network, Group: b.group.Path, Host: b.host, Prefix: b.prefix, Issuer: b.issuer}
}

func (a *Allocator) hostNet(hostName, network string) (*host, *netState, error) {
	h := a.s.hosts[hostName]
	if h == nil {
		return nil, nil, fmt.Errorf("%w: host %q has not joined", ErrNotFound, hostName)
	}
	ns := a.s.nets[network]
	if ns == nil {
		return nil, nil, fmt.Errorf("%w: network %q", ErrNotFound, network)
	}
	return h, ns, nil
}

// claimBlock claims a free block of h's leaf group, preferring the buddy of
// a block h already holds so that its blocks merge into fewer routes.
func (a *Allocator) claimBlock(tx *tx, ns *netState, h *host, issuer Issuer) (netip.Prefix, error) {
	leaf := h.leaf[ns.net.Name]
	elastic := a.opts.Mode == Elastic && !leaf.Pinned.IsValid()
	p, roomy, ok := a.freeBlock(ns, leaf, h)
	if ok && !roomy && elastic && h.holdsIn(ns.net.Name, leaf) {
		// The block could never merge with the host's others and leaves
		// the host no room to grow into: grow the group from free space
		// (never taking another group's) if that is possible, so the
		// host's blocks stay few routes.
		// A cloud subnet's hosts are L2 peers and the table routes the
		// subnet, not the host: a new prefix that costs the table a route
		// to save a host route is not worth it.
		mark := len(tx.changes)
		var before routeFloors
		if leaf.Mode == topology.ModeVPC {
			before = a.routeFloors(ns)
		}
		if a.grow(tx, ns, leaf, false) != nil || (leaf.Mode == topology.ModeVPC && a.routeFloors(ns).vpc > before.vpc) {
			tx.rollbackTo(mark)
		} else {
			p, _, ok = a.freeBlock(ns, leaf, h)
		}
	}
	if !ok {
		if a.opts.Mode == Static || leaf.Pinned.IsValid() {
			why := "static mode never grows a group"
			if a.opts.Mode != Static {
				why = "the group is pinned to its prefix"
			}
			return netip.Prefix{}, fmt.Errorf("%w: group %s is full (%s holds %d blocks, all claimed; %s)",
				ErrExhausted, leaf.Path, prefixList(ns.owned[leaf]), ns.blockSlots(leaf), why)
		}
		if err := a.grow(tx, ns, leaf, true); err != nil {
			return netip.Prefix{}, err
		}
		if p, _, ok = a.freeBlock(ns, leaf, h); !ok {
			return netip.Prefix{}, fmt.Errorf("internal error: group %s grew but has no free block", leaf.Path)
		}
	}
	if err := a.claim(tx, ns, leaf, Change{Kind: BlockClaimed, Network: ns.net.Name, Group: leaf.Path, Host: h.name, Prefix: p, Issuer: issuer}); err != nil {
		return netip.Prefix{}, err
	}
	return p, nil
}

// claim applies a block claim in group g. A group's first block makes its
// prefixes a route target of their own (vpcFloor counts only populated
// subnets): the claim is refused, before the block is handed out, when
// the table could then no longer fit its budget. The caller rolls tx back
// on error.
func (a *Allocator) claim(tx *tx, ns *netState, g *topology.Group, c Change) error {
	first := a.opts.Budgets.VPC > 0 && !ns.populated(g)
	var before routeFloors
	if first {
		before = a.routeFloors(ns)
	}
	if err := tx.do(c); err != nil {
		return err
	}
	if first {
		return a.checkBudgets(ns, g, true, before)
	}
	return nil
}

// populated reports whether group g holds a block.
func (ns *netState) populated(g *topology.Group) bool {
	return ns.claimed[g] > 0
}

// holdsIn reports whether h holds a block of group g in network (blocks
// of a group it has left, still draining, do not count).
func (h *host) holdsIn(network string, g *topology.Group) bool {
	for _, b := range h.blocks[network] {
		if b.group == g {
			return true
		}
	}
	return false
}

// blockSlots is how many blocks fit in g's prefixes.
func (ns *netState) blockSlots(g *topology.Group) uint64 {
	var n uint64
	for _, p := range ns.owned[g] {
		n = netx.AddSat(n, netx.SizeOfBits(p.Addr().BitLen(), p.Bits())/netx.SizeOfBits(p.Addr().BitLen(), ns.net.BlockBits))
	}
	return n
}

// freeBlock picks the block h should claim next in g. roomy reports that the
// block merges with h's last one or starts a free prefix larger than itself.
func (a *Allocator) freeBlock(ns *netState, g *topology.Group, h *host) (p netip.Prefix, roomy, ok bool) {
	if uint64(ns.claimed[g]) >= ns.blockSlots(g) {
		return netip.Prefix{}, false, false
	}
	bits := ns.net.BlockBits
	// Extend the host's region: take the first block of the buddy of the
	// largest prefix around its last block that it wholly holds, if that
	// buddy is wholly free; the two then merge into one route.
	if last := h.last[ns.net.Name]; last != nil && last.group == g {
		region := last.prefix
		for region.Bits() > 0 && ns.heldBy(netx.Parent(region), h.name, bits) {
			region = netx.Parent(region)
		}
		if bud, ok := netx.Buddy(region); ok && netx.CoveredBy(bud, ns.owned[g]) && ns.heldBy(bud, "", bits) {
			return netip.PrefixFrom(bud.Addr(), bits), true, true
		}
	}
	// Otherwise the first block of the largest wholly free prefix (the
	// lowest among equals): the host's next blocks can then be its buddies,
	// so each host's blocks stay one route per peer even when hosts claim
	// in turn.
	var best netip.Prefix
	bestTaken := true
	for _, f := range ns.freeIn(g) {
		if f.Bits() > bits {
			continue
		}
		// A free prefix whose buddy only one other host holds blocks in is
		// that host's room to grow: take it only when nothing else is left.
		taken := ns.expansionOfOther(f, h.name, bits)
		if !best.IsValid() || (bestTaken && !taken) || (taken == bestTaken && f.Bits() < best.Bits()) {
			best, bestTaken = f, taken
		}
	}
	if !best.IsValid() {
		return netip.Prefix{}, false, false
	}
	return netip.PrefixFrom(best.Addr(), bits), best.Bits() < bits && !bestTaken, true
}

// expansionOfOther reports whether f's buddy holds blocks of exactly one
// host other than host.
func (ns *netState) expansionOfOther(f netip.Prefix, host string, bits int) bool {
	bud, ok := netx.Buddy(f)
	if !ok || bits-bud.Bits() > 12 {
		return false
	}
	owner := ""
	n := uint64(1) << (bits - bud.Bits())
	for i := uint64(0); i < n; i++ {
		q, _ := netx.Nth(bud, bits, i)
		if b := ns.blocks[q]; b != nil {
			if owner != "" && b.host != owner {
				return false
			}
			owner = b.host
		}
	}
	return owner != "" && owner != host
}

// heldBy reports whether every block slot of p is claimed by host (or, for
// host "", unclaimed). It gives up beyond 4096 slots.
func (ns *netState) heldBy(p netip.Prefix, host string, bits int) bool {
	if bits-p.Bits() > 12 {
		return false
	}
	n := uint64(1) << (bits - p.Bits())
	for i := uint64(0); i < n; i++ {
		q, _ := netx.Nth(p, bits, i)
		b := ns.blocks[q]
		if (host == "" && b != nil) || (host != "" && (b == nil || b.host != host)) {
			return false
		}
	}
	return true
}

// releaseEmpty releases server block b if it is empty and either drained
// (its host has moved to another group) or not the host's last empty
// server block in its group: keeping one empty block spares the next
// endpoint a store write.
func (a *Allocator) releaseEmpty(tx *tx, network string, b *block) error {
	if b.count > 0 || b.issuer != IssuerServer {
		return nil
	}
	h := a.s.hosts[b.host]
	if b.group != h.leaf[network] {
		return tx.do(blockRelease(b, network))
	}
	for p, o := range h.pool(network).blocks {
		if p != b.prefix && o.count == 0 && o.group == b.group {
			return tx.do(blockRelease(b, network))
		}
	}
	return nil
}

// releaseDrained releases the empty server blocks a host still holds in
// groups it no longer belongs to. Agent blocks are the agent's to release:
// the server does not know which of their addresses are in use.
func (a *Allocator) releaseDrained(tx *tx, hostName string) error {
	h := a.s.hosts[hostName]
	for _, net := range slices.Sorted(maps.Keys(h.pools)) {
		for _, p := range sortedPrefixes(h.pools[net].blocks) {
			if b := h.pools[net].blocks[p]; b.count == 0 && b.group != h.leaf[net] {
				if err := tx.do(blockRelease(b, net)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func prefixList(ps []netip.Prefix) string { return netx.Join(ps, ",", "no prefix") }
