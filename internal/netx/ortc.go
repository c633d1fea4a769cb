package netx

import (
	"fmt"
	"net/netip"
	"slices"
)

// The smallest route set for one longest-prefix-match table (MinimalRoutes): ORTC (the
// Optimal Routing Table Constructor of Draves, King, Venkatachary and
// Zill, 1999) generalised to what Terrane's tables need.
//
// The input is a set of rules, each a prefix with what its addresses
// accept; the most specific RouteRule covering an address is the one that
// applies:
//
//   - WantTargets: the address must match a route to one of the targets
//     (an allocated address and the hosts that can deliver it);
//   - WantAny: anything, a route to any target or none (space that is not
//     allocated yet);
//   - WantDefault: no route may match it, the table's default must stand
//     (space that belongs to another level of the fabric). An address no
//     RouteRule covers is WantDefault.
//
// The output is the fewest (prefix → target) routes under which longest
// prefix match gives every address what it accepts. Routes may overlap:
// an aggregate towards one target with more specific exceptions.
//
// Why it is optimal. Let cost(v, h) be the fewest routes inside the
// subtree of trie node v when the route inherited from above v leads to h
// (h = ⊥: no route). In a subtree holding no WantDefault address,
// cost(v, t) ≤ cost(v, ⊥) for every target t (a solution under ⊥ resolves
// some addresses to ⊥, which are all WantAny, so it works under t too), and
// cost(v, h) ≤ min cost(v, ·) + 1 (emit one route at v towards the best
// target). So cost takes two values, m_v on a set S_v and m_v + 1 off it,
// and ⊥ ∈ S_v only when S_v holds every target (a subtree of WantAny
// space). ORTC's recurrence then holds unchanged: S_v is the intersection
// of the children's sets when it is not empty (m_v = m_a + m_b), else their
// union (m_v = m_a + m_b + 1); a leaf region accepting targets T has
// S = T, m = 0. A subtree holding a WantDefault address cannot lie under
// any route: it emits nothing at its root and its children start from ⊥,
// where a child costs m if its set holds ⊥ and m + 1 otherwise. Choosing
// top-down, a node emits a route only when the inherited target is not in
// its set; of equal choices, passes picks. The tests check the count
// against an exact search over every prefix and target of a small space.

// RouteWant is what the addresses of a RouteRule accept.
type RouteWant uint8

const (
	WantDefault RouteWant = iota
	WantAny
	WantTargets
)

// RouteRule says what the addresses of Prefix accept. Of rules with the
// same prefix the higher Rank wins; equal ranks combine: the targets both
// accept, and WantDefault when they share none.
type RouteRule struct {
	Prefix  netip.Prefix
	Want    RouteWant
	Targets []int // WantTargets: sorted, distinct, not empty (TargetsRule)
	Rank    int
}

// TargetRoute is one route of a minimal set: a prefix towards a target.
type TargetRoute struct {
	Prefix netip.Prefix
	Target int
}

// MinimalRoutes is the smallest route set meeting rules, sorted by prefix.
// Of several optimal targets at one prefix it takes the smallest number, so
// callers number the targets they prefer first. Of several optimal sets it
// takes, with wide, routes at the widest prefixes that do not overlap
// without saving (passes): they also cover the free space around, so a
// block claimed there later for the same target changes no route — what a
// cloud table, where each change is an API call, wants. Without wide, the
// most specific routes: a route covers free space only where that saves
// one. Rules of both families may be mixed; each family is solved on its
// own.
func MinimalRoutes(rules []RouteRule, wide bool) []TargetRoute {
	var out []TargetRoute
	for _, root := range buildTries(rules) {
		root.emit(-1, wide, &out)
	}
	slices.SortFunc(out, func(a, b TargetRoute) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out
}

// MinimalRouteCount is len(MinimalRoutes(rules)), computed without choosing
// the routes.
func MinimalRouteCount(rules []RouteRule) int {
	n := 0
	for _, root := range buildTries(rules) {
		n += root.costFromNone()
	}
	return n
}

// trieNode is a node of the binary trie over the rules' prefixes. After
// build every node has no child or two.
type trieNode struct {
	p     netip.Prefix
	kids  [2]*trieNode
	own   *RouteRule // the RouteRule at exactly p, if any
	eff   RouteRule  // the RouteRule in force at p (own, or inherited)
	solve nodeSolution
}

// nodeSolution is ORTC's pass 2 result at a node.
type nodeSolution struct {
	// blocked: the subtree holds WantDefault space, so no route may cover
	// the node.
	blocked bool
	// cost is m_v; for a blocked node, the cost of its subtree under ⊥.
	cost int
	// all: every target and ⊥ are in S_v (WantAny space only).
	all bool
	set []int // S_v when not all, sorted
	// union: the children's sets were disjoint, S_v is their union.
	union bool
}

func buildTries(rules []RouteRule) []*trieNode {
	sorted := slices.Clone(rules)
	slices.SortStableFunc(sorted, func(a, b RouteRule) int {
		if a.Prefix.Bits() != b.Prefix.Bits() {
			return a.Prefix.Bits() - b.Prefix.Bits()
		}
		return a.Rank - b.Rank
	})
	var roots []*trieNode
	for _, bits := range []int{32, 128} {
		var root *trieNode
		for i := range sorted {
			r := &sorted[i]
			if !r.Prefix.IsValid() || r.Prefix.Addr().BitLen() != bits {
				continue
			}
			if root == nil {
				root = &trieNode{p: netip.PrefixFrom(r.Prefix.Addr(), 0).Masked()}
			}
			root.insert(r)
		}
		if root == nil {
			continue
		}
		root.complete(RouteRule{Want: WantDefault})
		root.pass2()
		roots = append(roots, root)
	}
	return roots
}

func (n *trieNode) insert(r *RouteRule) {
	p := r.Prefix.Masked()
	for n.p.Bits() < p.Bits() {
		bit := addrBit(p.Addr(), n.p.Bits())
		if n.kids[bit] == nil {
			child, _ := p.Addr().Prefix(n.p.Bits() + 1)
			n.kids[bit] = &trieNode{p: child}
		}
		n = n.kids[bit]
	}
	switch {
	case n.own == nil || r.Rank > n.own.Rank:
		c := *r
		n.own = &c
	case r.Rank == n.own.Rank:
		n.own = combine(n.own, r)
	}
}

// combine is what an address accepts under two rules of equal rank.
func combine(a, b *RouteRule) *RouteRule {
	c := *a
	switch {
	case a.Want == WantDefault || b.Want == WantDefault:
		c.Want, c.Targets = WantDefault, nil
	case a.Want == WantAny:
		c.Want, c.Targets = b.Want, b.Targets
	case b.Want == WantTargets:
		c.Targets = intersect(a.Targets, b.Targets)
		if len(c.Targets) == 0 {
			c.Want = WantDefault
		}
	}
	return &c
}

// complete pushes the rules down (ORTC's pass 1): each node learns the
// RouteRule in force, and a node with one child gets the other as a leaf
// region under its own RouteRule.
func (n *trieNode) complete(inherited RouteRule) {
	n.eff = inherited
	if n.own != nil {
		n.eff = *n.own
	}
	if n.kids[0] == nil && n.kids[1] == nil {
		return
	}
	for bit := range n.kids {
		if n.kids[bit] == nil {
			lo, _ := n.p.Addr().Prefix(n.p.Bits() + 1)
			if bit == 1 {
				lo = netip.PrefixFrom(setBit(lo.Addr(), n.p.Bits()), n.p.Bits()+1)
			}
			n.kids[bit] = &trieNode{p: lo}
		}
		n.kids[bit].complete(n.eff)
	}
}

// pass2 computes each node's solution bottom-up.
func (n *trieNode) pass2() {
	if n.kids[0] == nil {
		switch n.eff.Want {
		case WantDefault:
			n.solve = nodeSolution{blocked: true}
		case WantAny:
			n.solve = nodeSolution{all: true}
		default:
			n.solve = nodeSolution{set: n.eff.Targets}
		}
		return
	}
	a, b := n.kids[0], n.kids[1]
	a.pass2()
	b.pass2()
	sa, sb := &a.solve, &b.solve
	if sa.blocked || sb.blocked {
		n.solve = nodeSolution{blocked: true, cost: a.costFromNone() + b.costFromNone()}
		return
	}
	base := sa.cost + sb.cost
	switch {
	case sa.all && sb.all:
		n.solve = nodeSolution{cost: base, all: true}
	case sa.all:
		n.solve = nodeSolution{cost: base, set: sb.set}
	case sb.all:
		n.solve = nodeSolution{cost: base, set: sa.set}
	default:
		if s := intersect(sa.set, sb.set); len(s) > 0 {
			n.solve = nodeSolution{cost: base, set: s}
		} else {
			n.solve = nodeSolution{cost: base + 1, set: union(sa.set, sb.set), union: true}
		}
	}
}

// costFromNone is the fewest routes in n's subtree when no route covers n.
func (n *trieNode) costFromNone() int {
	s := &n.solve
	if s.blocked || s.all {
		return s.cost
	}
	return s.cost + 1
}

// emit is ORTC's pass 3: inherited is the target of the route covering n
// (-1: none); a route is emitted where it is not in n's set.
func (n *trieNode) emit(inherited int, wide bool, out *[]TargetRoute) {
	s := &n.solve
	if s.blocked {
		if n.kids[0] != nil {
			n.kids[0].emit(-1, wide, out)
			n.kids[1].emit(-1, wide, out)
		}
		return
	}
	if !s.all && (inherited < 0 || !containsSorted(s.set, inherited)) && !n.passes(inherited, wide) {
		inherited = s.set[0]
		*out = append(*out, TargetRoute{Prefix: n.p, Target: inherited})
	}
	if n.kids[0] != nil {
		n.kids[0].emit(inherited, wide, out)
		n.kids[1].emit(inherited, wide, out)
	}
}

// passes reports whether n's children can route themselves under
// inherited (not in n's set) at no more cost than a route at n. Without
// wide they then do: routes stay specific. With wide only when n's
// children's sets are disjoint: a route at n would merely make one child
// an exception to the other's target, an overlap that saves nothing.
func (n *trieNode) passes(inherited int, wide bool) bool {
	if n.kids[0] == nil || wide && !n.solve.union {
		return false
	}
	under := func(c *trieNode) int {
		switch {
		case inherited < 0:
			return c.costFromNone()
		case c.solve.all || containsSorted(c.solve.set, inherited):
			return c.solve.cost
		}
		return c.solve.cost + 1
	}
	return under(n.kids[0])+under(n.kids[1]) <= n.solve.cost+1
}

func addrBit(a netip.Addr, i int) int {
	b := a.As16()
	if a.Is4() {
		i += 96
	}
	return int(b[i/8]>>(7-i%8)) & 1
}

func setBit(a netip.Addr, i int) netip.Addr {
	if a.Is4() {
		b := a.As4()
		b[i/8] |= 1 << (7 - i%8)
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	b[i/8] |= 1 << (7 - i%8)
	return netip.AddrFrom16(b)
}

func containsSorted(s []int, x int) bool {
	_, ok := slices.BinarySearch(s, x)
	return ok
}

func intersect(a, b []int) []int {
	var out []int
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	return out
}

func union(a, b []int) []int {
	out := make([]int, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			out = append(out, a[i])
			i++
		case a[i] > b[j]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// TargetsRule is a WantTargets RouteRule, or WantDefault when ts is empty.
func TargetsRule(p netip.Prefix, rank int, ts ...int) RouteRule {
	ts = slices.Compact(slices.Sorted(slices.Values(ts)))
	if len(ts) == 0 {
		return RouteRule{Prefix: p, Want: WantDefault, Rank: rank}
	}
	return RouteRule{Prefix: p, Want: WantTargets, Targets: ts, Rank: rank}
}

func (r TargetRoute) String() string { return fmt.Sprintf("%s→%d", r.Prefix, r.Target) }
