package vpc

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/terrane-net/terrane/internal/netx"
	"go4.org/netipx"
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
//   - a route is written (created or replaced) only once every route of the
//     new set strictly inside it is in place, so at every step each address
//     is routed by its route of the old set or of the new one, never by a
//     new aggregate ahead of its exception;
//   - of the routes that may be written, replaces go first (they keep their
//     destination: the count does not change), then the create that covers
//     the most routes to delete (an aggregation: those deletes become safe
//     and free room), then the longest prefix;
//   - a delete is made as soon as it is safe — its space is released (no
//     desired route overlaps it), or every route of the new set that
//     overlaps it is in place and one of them covers it — so room is freed
//     early;
//   - a create is made only while the family's count is under its budget;
//     at the budget with no safe delete, one delete is made anyway (the
//     first, so its destination is unrouted until the next create, one call
//     later). Plans leave a route free where they can (routing.VPCTable),
//     so this happens only at a table filled to its limit;
//   - the remaining deletes last.
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
	var desired []netip.Prefix
	for _, d := range fp.Routes {
		want[d.Dst] = true
		desired = append(desired, d.Dst)
		r, ok := have[d.Dst]
		switch {
		case !ok:
			writes = append(writes, Op{Kind: OpCreate, Dst: d.Dst, Instance: d.Instance})
		case r.Instance != d.Instance || r.Blackhole || r.Target != "":
			writes = append(writes, Op{Kind: OpReplace, Dst: d.Dst, Instance: d.Instance})
		}
	}
	var deletes []netip.Prefix
	for dst := range have {
		if !want[dst] {
			deletes = append(deletes, dst)
		}
	}
	slices.SortFunc(deletes, netx.Less)
	// old and next are the two sets, cur the table as the calls so far
	// leave it (a route that cannot deliver — a blackhole, another target —
	// is in cur but routes nothing in old).
	old, next, cur := routeTable{}, routeTable{}, routeTable{}
	for dst, r := range have {
		cur[dst] = r.Instance
		if r.Instance != "" && !r.Blackhole && r.Target == "" {
			old[dst] = r.Instance
		} else {
			cur[dst] = "(cannot deliver)"
		}
	}
	for _, d := range fp.Routes {
		next[d.Dst] = d.Instance
	}
	// A delete is safe when its space is released, or when without it every
	// address that both sets route still follows its old or its new route.
	safeIn := func(t routeTable, d netip.Prefix) bool {
		if !overlapsAny(d, desired) {
			return true
		}
		without := maps.Clone(t)
		delete(without, d)
		return keepsRouting(without, old, next, d)
	}
	safe := func(d netip.Prefix) bool { return safeIn(cur, d) }
	count := len(have)
	deleteSafe := func() {
		for i := 0; i < len(deletes); {
			if safe(deletes[i]) {
				ops = append(ops, Op{Kind: OpDelete, Dst: deletes[i]})
				delete(cur, deletes[i])
				deletes = slices.Delete(deletes, i, i+1)
				count--
				continue
			}
			i++
		}
	}
	// pick is the index of the next write: one after which every address
	// both sets route still follows its old or its new route (the longest
	// pending write always is: no pending write lies inside it); replaces
	// first, then (one route from the budget) the write that makes the most
	// deletes safe, then the create covering the most deletes, then the
	// longest prefix, then the lowest address.
	pick := func() int {
		type score struct{ replace, frees, covers, bits int }
		better := func(a, b score) bool {
			for _, d := range [][2]int{{a.replace, b.replace}, {a.frees, b.frees}, {a.covers, b.covers}, {a.bits, b.bits}} {
				if d[0] != d[1] {
					return d[0] > d[1]
				}
			}
			return false
		}
		best, bestScore := -1, score{}
		for i, w := range writes {
			with := maps.Clone(cur)
			with[w.Dst] = w.Instance
			if !keepsRouting(with, old, next, w.Dst) {
				continue // an exception of the new set inside it is missing
			}
			sc := score{bits: w.Dst.Bits()}
			if w.Kind == OpReplace {
				sc.replace = 1
			}
			for _, d := range deletes {
				if netx.Covers(w.Dst, d) {
					sc.covers++
				}
				// Near the budget, what the write lets go matters most.
				if count >= fp.Budget-1 && safeIn(with, d) {
					sc.frees++
				}
			}
			if best < 0 || better(sc, bestScore) || sc == bestScore && netx.Less(w.Dst, writes[best].Dst) < 0 {
				best, bestScore = i, sc
			}
		}
		return best
	}
	deleteSafe()
	for len(writes) > 0 {
		i := pick()
		w := writes[i]
		if w.Kind == OpCreate && count >= fp.Budget && len(deletes) > 0 {
			// No safe delete is left (deleteSafe ran): make room anyway.
			ops = append(ops, Op{Kind: OpDelete, Dst: deletes[0]})
			delete(cur, deletes[0])
			deletes = deletes[1:]
			count--
			continue
		}
		writes = slices.Delete(writes, i, i+1)
		ops = append(ops, w)
		cur[w.Dst] = w.Instance
		if w.Kind == OpCreate {
			count++
		}
		deleteSafe()
	}
	for _, d := range deletes {
		ops = append(ops, Op{Kind: OpDelete, Dst: d})
	}
	return ops
}

// routeTable is a route table as destination → instance.
type routeTable map[netip.Prefix]string

// lpm is the instance the table sends a to, by longest match.
func (t routeTable) lpm(a netip.Addr) (string, bool) {
	best, inst := -1, ""
	for p, i := range t {
		if p.Bits() > best && p.Contains(a) {
			best, inst = p.Bits(), i
		}
	}
	return inst, best >= 0
}

// keepsRouting reports whether every address of d that old and next both
// route follows, in t, its old instance or its new one. Each table's
// longest match is constant between the first and one-past-last addresses
// of their prefixes, so the start of each such piece of d stands for it.
func keepsRouting(t, old, next routeTable, d netip.Prefix) bool {
	starts := []netip.Addr{d.Addr()}
	for _, set := range []routeTable{t, old, next} {
		for p := range set {
			if !p.Overlaps(d) {
				continue
			}
			if d.Contains(p.Addr()) {
				starts = append(starts, p.Addr())
			}
			if after := netipx.PrefixLastIP(p).Next(); after.IsValid() && d.Contains(after) {
				starts = append(starts, after)
			}
		}
	}
	for _, a := range starts {
		was, ok1 := old.lpm(a)
		will, ok2 := next.lpm(a)
		if !ok1 || !ok2 {
			continue
		}
		if now, _ := t.lpm(a); now != was && now != will {
			return false
		}
	}
	return true
}

func overlapsAny(p netip.Prefix, ps []netip.Prefix) bool {
	return slices.ContainsFunc(ps, func(q netip.Prefix) bool { return q.Overlaps(p) })
}
