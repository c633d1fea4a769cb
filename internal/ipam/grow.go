package ipam

import (
	"errors"
	"fmt"
	"net/netip"

	"go4.org/netipx"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// grow gives a full leaf group more space (elastic mode). It asks for as
// much as the group's largest prefix (so a taken buddy doubles it) and
// settles for less, down to one block. Space comes, in order of preference:
//
//  1. free space of the nearest ancestor (not owned by any of its children),
//     then of the next ancestor up, up to the network itself; at each level
//     the buddy of a prefix the group holds first, then space inside the
//     group's home prefix, then padding no sibling calls home, then the far
//     end of a sibling's home;
//  2. (when steal is set) unused space (no block in it) that another group
//     owns, nearest in the tree first, taken from the far end of that
//     group's space.
//
// Every candidate is checked against the route budgets; one that would raise
// a route floor past its budget is skipped. A cloud subnet (a vpc leaf)
// orders its candidates its own way: growSubnet.
func (a *Allocator) grow(tx *tx, ns *netState, leaf *topology.Group, steal bool) error {
	bits := ns.net.BlockBits
	target := bits
	for _, p := range ns.owned[leaf] {
		target = min(target, p.Bits())
	}
	// The leaf and its ancestors up to the network (nil), or up to the
	// nearest pinned one: a pinned group never grows, so no level above it
	// may hand space down through it.
	path := []*topology.Group{leaf}
	for g := leaf; g != nil && !g.Pinned.IsValid(); g = g.Parent {
		path = append(path, g.Parent)
	}
	var budgetErr error
	attempt := func(do func() error) bool {
		mark := len(tx.changes)
		floorBefore := a.routeFloors(ns)
		err := do()
		if err == nil {
			err = a.checkBudgets(ns, leaf, false, floorBefore)
		}
		if err != nil {
			tx.rollbackTo(mark)
			if budgetErr == nil && errors.Is(err, ErrRouteBudget) {
				budgetErr = err
			}
			return false
		}
		return true
	}
	try := func(q netip.Prefix, receivers, donors []*topology.Group) bool {
		return attempt(func() error { return a.transfer(tx, ns, q, receivers, donors) })
	}
	if leaf.Mode == topology.ModeVPC {
		if a.growSubnet(tx, ns, leaf, path, target, steal, attempt, try) {
			return nil
		}
		if budgetErr != nil {
			return budgetErr
		}
		if !steal {
			return fmt.Errorf("%w: no free space above group %s", ErrExhausted, leaf.Path)
		}
		return fmt.Errorf("%w: network %s (%s) has no free /%d left for group %s", ErrExhausted, ns.net.Name, ns.net.CIDR, bits, leaf.Path)
	}
	// 1. Free space, nearest level first.
	if a.growFromFree(path, ns, leaf, target, bits, try) {
		return nil
	}
	if !steal {
		return fmt.Errorf("%w: no free space above group %s", ErrExhausted, leaf.Path)
	}
	// 2. Unused space of other groups, nearest first: the group on our path
	// at that level takes the donor's largest unused prefix whole (a large
	// cut leaves both sides with few prefixes), then step 1 hands it down.
	for lvl := 1; lvl < len(path); lvl++ {
		if a.steal(tx, ns, path, lvl, try) && (lvl == 1 || a.growFromFree(path, ns, leaf, target, bits, try)) {
			return nil
		}
	}
	if budgetErr != nil {
		return budgetErr
	}
	return fmt.Errorf("%w: network %s (%s) has no free /%d left for group %s", ErrExhausted, ns.net.Name, ns.net.CIDR, bits, leaf.Path)
}

func (a *Allocator) growFromFree(path []*topology.Group, ns *netState, leaf *topology.Group, target, bits int, try func(q netip.Prefix, receivers, donors []*topology.Group) bool) bool {
	for lvl := 1; lvl < len(path); lvl++ {
		free := a.freeAt(ns, path[lvl])
		if len(free.Prefixes()) == 0 {
			continue
		}
		for _, q := range a.freeCandidates(ns, free, leaf, path[lvl], target, bits) {
			if try(q, path[:lvl], nil) {
				return true
			}
		}
	}
	return false
}

// steal moves unused space from a sibling subtree at level lvl to the group
// on path below that level. Of each sibling's largest unused prefixes (the
// highest one, far from where the sibling grows) it takes the one that
// raises the route floors least.
func (a *Allocator) steal(tx *tx, ns *netState, path []*topology.Group, lvl int, try func(q netip.Prefix, receivers, donors []*topology.Group) bool) bool {
	return a.stealExcept(tx, ns, path, lvl, nil, try)
}

// largestUnused is the largest prefix of s, the highest among equals.
func largestUnused(s *netipx.IPSet) (netip.Prefix, bool) {
	var best netip.Prefix
	for _, p := range s.Prefixes() {
		if !best.IsValid() || p.Bits() <= best.Bits() {
			best = p
		}
	}
	return best, best.IsValid()
}

// transfer gives q to receivers (a leaf and the ancestors below the level q
// comes from), taking it away from donors first.
func (a *Allocator) transfer(tx *tx, ns *netState, q netip.Prefix, receivers, donors []*topology.Group) error {
	for _, d := range donors {
		for _, o := range ns.owned[d] {
			var cut netip.Prefix
			switch {
			case netx.Covers(q, o):
				cut = o
			case netx.Covers(o, q):
				cut = q
			default:
				continue
			}
			if err := tx.do(Change{Kind: GroupPrefixRemoved, Network: ns.net.Name, Group: d.Path, Prefix: cut}); err != nil {
				return err
			}
		}
	}
	for i := len(receivers) - 1; i >= 0; i-- {
		if err := tx.do(Change{Kind: GroupPrefixAdded, Network: ns.net.Name, Group: receivers[i].Path, Prefix: q}); err != nil {
			return err
		}
	}
	return nil
}

// children are the groups directly below g (the top-level groups for nil).
func children(n *topology.Network, g *topology.Group) []*topology.Group {
	if g == nil {
		return n.Tree.Groups
	}
	return g.Children
}

func subtree(g *topology.Group) []*topology.Group {
	out := []*topology.Group{g}
	for _, c := range g.Children {
		out = append(out, subtree(c)...)
	}
	return out
}

// ownedOrNetwork is what g owns, or the whole usable network for nil.
func (a *Allocator) ownedOrNetwork(ns *netState, g *topology.Group) []netip.Prefix {
	if g == nil {
		return netx.Subtract([]netip.Prefix{ns.net.CIDR}, ns.reserved...)
	}
	return ns.owned[g]
}

// freeAt is the space g (or the network, for nil) owns that none of its
// children owns.
func (a *Allocator) freeAt(ns *netState, g *topology.Group) *netipx.IPSet {
	var b netipx.IPSetBuilder
	for _, p := range a.ownedOrNetwork(ns, g) {
		b.AddPrefix(p)
	}
	for _, c := range children(ns.net, g) {
		for _, p := range ns.owned[c] {
			b.RemovePrefix(p)
		}
	}
	s, _ := b.IPSet()
	return s
}

// unusedIn is the space g owns that holds no block of g's subtree.
func (a *Allocator) unusedIn(ns *netState, g *topology.Group) *netipx.IPSet {
	var b netipx.IPSetBuilder
	for _, p := range ns.owned[g] {
		b.AddPrefix(p)
	}
	for p, blk := range ns.blocks {
		if g.IsAncestorOf(blk.group) {
			b.RemovePrefix(p)
		}
	}
	s, _ := b.IPSet()
	return s
}

// freeCandidates lists aligned prefixes of free space at level lvl in the
// order grow prefers them.
func (a *Allocator) freeCandidates(ns *netState, free *netipx.IPSet, leaf, level *topology.Group, target, bits int) []netip.Prefix {
	var out []netip.Prefix
	seen := map[netip.Prefix]bool{}
	add := func(p netip.Prefix, ok bool) {
		if ok && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	// The buddy of a prefix the leaf holds: taking it merges the two.
	for _, o := range ns.owned[leaf] {
		if bud, ok := netx.Buddy(o); ok && o.Bits() <= bits && free.ContainsPrefix(bud) {
			add(bud, true)
		}
	}
	// Space inside the leaf's home, lowest first. A cloud subnet whose
	// buddy is gone takes one block at a time: what it leaves, the busy
	// subnet takes without a route of its own.
	if home, ok := ns.homes[leaf]; ok {
		inHome := intersect(free, home)
		from := target
		if leaf.Mode == topology.ModeVPC {
			from = bits
		}
		for b := from; b <= bits; b++ {
			add(firstAligned(inHome, b))
		}
	}
	// Padding: free space no group at this level calls home.
	var homes []netip.Prefix
	for _, c := range children(ns.net, level) {
		homes = append(homes, ns.homes[c])
	}
	padding := minus(free, homes)
	for b := target; b <= bits; b++ {
		add(firstAligned(padding, b))
	}
	// The far end of a sibling's home.
	for b := target; b <= bits; b++ {
		add(lastAligned(free, b))
	}
	return out
}

func intersect(s *netipx.IPSet, p netip.Prefix) *netipx.IPSet {
	var b netipx.IPSetBuilder
	b.AddPrefix(p)
	b.Intersect(s)
	out, _ := b.IPSet()
	return out
}

func minus(s *netipx.IPSet, ps []netip.Prefix) *netipx.IPSet {
	if len(ps) == 0 {
		return s
	}
	var b netipx.IPSetBuilder
	b.AddSet(s)
	for _, p := range ps {
		b.RemovePrefix(p)
	}
	out, _ := b.IPSet()
	return out
}

// firstAligned is the lowest prefix of length bits inside s.
func firstAligned(s *netipx.IPSet, bits int) (netip.Prefix, bool) {
	for _, p := range s.Prefixes() {
		if p.Bits() <= bits {
			return netip.PrefixFrom(p.Addr(), bits), true
		}
	}
	return netip.Prefix{}, false
}

// lastAligned is the highest prefix of length bits inside s.
func lastAligned(s *netipx.IPSet, bits int) (netip.Prefix, bool) {
	ps := s.Prefixes()
	for i := len(ps) - 1; i >= 0; i-- {
		if p := ps[i]; p.Bits() <= bits {
			q, _ := netipx.PrefixLastIP(p).Prefix(bits)
			return q, true
		}
	}
	return netip.Prefix{}, false
}

// routeFloors are the fewest routes each budgeted target can be brought to
// in the current state: the VPC table at its optimum however the current
// group prefixes fill with blocks, and the largest group announcement set
// of a bgp group announcing its group prefixes.
type routeFloors struct {
	vpc      int
	bgp      int
	bgpGroup string
}

func (a *Allocator) routeFloors(ns *netState) routeFloors {
	var f routeFloors
	hasVPC := false
	for _, g := range ns.net.Tree.All {
		hasVPC = hasVPC || g.Mode == topology.ModeVPC
		if g.IsLeaf() && g.Mode == topology.ModeBGP && g.Advertise == topology.AdvertiseGroup && len(ns.owned[g]) > f.bgp {
			f.bgp, f.bgpGroup = len(ns.owned[g]), g.Path
		}
	}
	if hasVPC {
		f.vpc = vpcFloor(ns)
	}
	return f
}

// vpcFloor is the fewest routes the VPC table can have however the current
// group prefixes fill: the optimum (netx.MinimalRouteCount, as
// routing.MinVPCRoutes counts for the blocks themselves) with every prefix
// of a subnet (a vpc leaf group) that holds blocks routed to that subnet —
// any of its hosts delivers, they are L2 peers — the other space of vpc
// groups free, and everything else kept off the table. A block claimed in
// the current prefixes never needs more: the routing core's table for the
// blocks is at most this.
func vpcFloor(ns *netState) int {
	populated := map[*topology.Group]bool{}
	for _, b := range ns.blocks {
		populated[b.group] = true
	}
	var rules []netx.RouteRule
	for i, g := range ns.net.Tree.All {
		depth := 0
		for p := g.Parent; p != nil; p = p.Parent {
			depth++
		}
		for _, p := range ns.owned[g] {
			switch {
			case g.Mode != topology.ModeVPC:
				rules = append(rules, netx.RouteRule{Prefix: p, Want: netx.WantDefault, Rank: depth})
			case g.IsLeaf() && populated[g]:
				rules = append(rules, netx.TargetsRule(p, depth, i))
			default:
				rules = append(rules, netx.RouteRule{Prefix: p, Want: netx.WantAny, Rank: depth})
			}
		}
	}
	return netx.MinimalRouteCount(rules)
}

// RouteFloors reports the fewest VPC routes network can be aggregated to and
// the most prefixes one bgp group announces, in the current state.
func (a *Allocator) RouteFloors(network string) (vpc, bgp int) {
	ns := a.s.nets[network]
	if ns == nil {
		return 0, 0
	}
	f := a.routeFloors(ns)
	return f.vpc, f.bgp
}

// BudgetError is a refusal to give group more space or its first block
// because the routes its network would then need, even fully aggregated,
// exceed a route budget: the group pays for the budget. It wraps
// ErrRouteBudget.
type BudgetError struct {
	Network string
	// Group is the path of the group refused.
	Group string
	// Target is the budgeted level: "vpc" (the network's route table) or
	// "bgp" (the routes one ToR receives).
	Target string
	// Need is the fewest routes the target would need; Budget its limit.
	Need, Budget int
	// Announcer is the bgp group whose announcements would exceed the
	// budget (Target "bgp").
	Announcer string
	// First is set when the refused request is the group's first block.
	First bool
}

func (e *BudgetError) Error() string {
	what := "growing group " + e.Group
	if e.First {
		what = "a first block for group " + e.Group
	}
	if e.Target == "bgp" {
		return fmt.Sprintf("%v: %s would make group %s announce %d prefixes in network %s, over the bgp budget of %d", ErrRouteBudget, what, e.Announcer, e.Need, e.Network, e.Budget)
	}
	return fmt.Sprintf("%v: %s would need %d vpc routes in network %s even fully aggregated, over the budget of %d", ErrRouteBudget, what, e.Need, e.Network, e.Budget)
}

func (e *BudgetError) Unwrap() error { return ErrRouteBudget }

// checkBudgets fails when a change made for group g raised a route floor
// past its budget.
func (a *Allocator) checkBudgets(ns *netState, g *topology.Group, first bool, before routeFloors) error {
	after := a.routeFloors(ns)
	b := a.opts.Budgets
	if b.VPC > 0 && after.vpc > b.VPC && after.vpc > before.vpc {
		return &BudgetError{Network: ns.net.Name, Group: g.Path, Target: "vpc", Need: after.vpc, Budget: b.VPC, First: first}
	}
	if b.BGP > 0 && after.bgp > b.BGP && after.bgp > before.bgp {
		return &BudgetError{Network: ns.net.Name, Group: g.Path, Target: "bgp", Need: after.bgp, Budget: b.BGP, Announcer: after.bgpGroup, First: first}
	}
	return nil
}
