package vpc

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/terrane-net/terrane/internal/netx"
)

// OpKind is one of the three route calls.
type OpKind string

// The route calls, named as EC2 names them.
const (
	OpCreate  OpKind = "CreateRoute"
	OpReplace OpKind = "ReplaceRoute"
	OpDelete  OpKind = "DeleteRoute"
)

// Op is one route call.
type Op struct {
	Kind     OpKind
	Dst      netip.Prefix
	Instance string // create and replace
}

func (o Op) String() string {
	if o.Kind == OpDelete {
		return fmt.Sprintf("%s %s", o.Kind, o.Dst)
	}
	return fmt.Sprintf("%s %s → %s", o.Kind, o.Dst, o.Instance)
}

// Owned reports whether a route is Terrane's: made by CreateRoute, with a
// destination inside one of Terrane's networks. The VPC's local route,
// propagated routes and routes to anything outside Terrane's networks are
// never touched.
func Owned(r CloudRoute, networks []netip.Prefix) bool {
	if r.Origin != OriginCreateRoute || !r.Dst.IsValid() {
		return false
	}
	for _, n := range networks {
		if netx.Covers(n, r.Dst) {
			return true
		}
	}
	return false
}

// Diff is the ordered list of calls that turns the table's own routes
// (actual, filtered with Owned) into plan's, per address family,
// make-before-break:
//
//  1. creates and replaces, longest prefix first: a route that covers an
//     address only appears once the address's own (longest) route of the
//     new set is in place, so at every step each address is routed by its
//     route of the old set or of the new one, never by a new aggregate
//     ahead of its exception. A replace keeps its destination, so the count
//     does not change; a create is made only while the family's count is
//     under its budget; at the budget a delete makes room — one whose space
//     no desired route covers (released space) first, then one a route
//     already in the table covers (traffic does not notice), and only then
//     any other (a full table aggregating: that destination is unrouted
//     until the next create, one call later);
//  2. then the remaining deletes, once the whole new set is in place.
//
// The count of a family's own routes never exceeds max(budget, its count
// before). A family whose plan does not fit gets no calls. Applying the
// calls and planning again gives no calls.
func Diff(plan TablePlan, actual []CloudRoute) []Op {
	var ops []Op
	for _, fp := range plan.Families {
		if !fp.Fits {
			continue
		}
		ops = append(ops, diffFamily(fp, plan.Networks, actual)...)
	}
	return ops
}

func diffFamily(fp FamilyPlan, networks []netip.Prefix, actual []CloudRoute) []Op {
	have := map[netip.Prefix]CloudRoute{}
	for _, r := range actual {
		if Owned(r, networks) && r.Dst.Addr().Is4() == (fp.Family == 4) {
			have[r.Dst] = r
		}
	}
	want := map[netip.Prefix]bool{}
	var ops, writes []Op
	present := []netip.Prefix{} // desired routes in the table now
	for _, d := range fp.Routes {
		want[d.Dst] = true
		r, ok := have[d.Dst]
		switch {
		case !ok:
			writes = append(writes, Op{Kind: OpCreate, Dst: d.Dst, Instance: d.Instance})
		case r.Instance != d.Instance || r.Blackhole || r.Target != "":
			writes = append(writes, Op{Kind: OpReplace, Dst: d.Dst, Instance: d.Instance})
		default:
			present = append(present, d.Dst)
		}
	}
	var deletes []netip.Prefix
	for dst := range have {
		if !want[dst] {
			deletes = append(deletes, dst)
		}
	}
	slices.SortFunc(deletes, netx.Less)
	slices.SortFunc(writes, func(a, b Op) int {
		if a.Dst.Bits() != b.Dst.Bits() {
			return b.Dst.Bits() - a.Dst.Bits() // longest first
		}
		return netx.Less(a.Dst, b.Dst)
	})
	var desired []netip.Prefix
	for _, d := range fp.Routes {
		desired = append(desired, d.Dst)
	}
	// nextDelete picks the delete to make room with (see Diff).
	nextDelete := func() int {
		for i, d := range deletes {
			if !overlapsAny(d, desired) {
				return i
			}
		}
		for i, d := range deletes {
			if coveredByAny(d, present) {
				return i
			}
		}
		return 0
	}
	count := len(have)
	for len(writes) > 0 {
		if w := writes[0]; w.Kind == OpReplace || count < fp.Budget || len(deletes) == 0 {
			writes = writes[1:]
			ops = append(ops, w)
			present = append(present, w.Dst)
			if w.Kind == OpCreate {
				count++
			}
			continue
		}
		i := nextDelete()
		ops = append(ops, Op{Kind: OpDelete, Dst: deletes[i]})
		deletes = slices.Delete(deletes, i, i+1)
		count--
	}
	for _, d := range deletes {
		ops = append(ops, Op{Kind: OpDelete, Dst: d})
	}
	return ops
}

func overlapsAny(p netip.Prefix, ps []netip.Prefix) bool {
	return slices.ContainsFunc(ps, func(q netip.Prefix) bool { return q.Overlaps(p) })
}

func coveredByAny(p netip.Prefix, ps []netip.Prefix) bool {
	return slices.ContainsFunc(ps, func(q netip.Prefix) bool { return netx.Covers(q, p) })
}
