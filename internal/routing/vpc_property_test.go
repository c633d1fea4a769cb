package routing

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/topology"
)

// vpcWorld is what the VPC properties need to know about a random state,
// worked out by enumeration rather than by the code under test.
type vpcWorld struct {
	in      Input
	space   netip.Prefix
	table   []Host      // hosts in the route table: vpc hosts (the generator keeps modes consistent)
	owner   [256]string // which host's block holds each address
	inTable map[string]bool
	direct  int // routes when nothing is aggregated
	allTop  int // routes when every top-most aggregatable group is aggregated
}

func newVPCWorld(t *testing.T, in Input, space netip.Prefix) *vpcWorld {
	w := &vpcWorld{in: in, space: space, inTable: map[string]bool{}}
	for _, h := range in.Hosts {
		for i, ok := range setOf(t, space, h.Blocks...) {
			if ok {
				w.owner[i] = h.Name
			}
		}
		if h.Mode == topology.ModeVPC {
			w.table = append(w.table, h)
			w.inTable[h.Name] = true
			w.direct += len(oracleCover(space, setOf(t, space, h.Blocks...)))
		}
	}
	// A group may aggregate when its whole subtree is vpc and its target
	// can deliver: it is a leaf (a subnet of L2 peers) or one host at most
	// owns blocks under it. The top-most of those are aggregated in the
	// brief's "floor".
	allVPC := func(path string) bool {
		for _, g := range in.Groups {
			if isAtOrUnder(in, g.Path, path) && g.Mode != topology.ModeVPC {
				return false
			}
		}
		return true
	}
	eligible := func(g Group) bool {
		leaf := !slices.ContainsFunc(in.Groups, func(c Group) bool { return c.Parent == g.Path })
		return allVPC(g.Path) && (leaf || w.owners(g.Path) <= 1)
	}
	var tops []Group
	for _, g := range in.Groups {
		if !eligible(g) {
			continue
		}
		top := true
		for p, ok := groupOf(in, g.Parent); ok; p, ok = groupOf(in, p.Parent) {
			if eligible(p) {
				top = false
			}
		}
		if top {
			tops = append(tops, g)
			w.allTop += len(oracleCover(space, setOf(t, space, g.Prefixes...)))
		}
	}
	for _, h := range w.table {
		if !slices.ContainsFunc(tops, func(g Group) bool { return isAtOrUnder(in, h.Group, g.Path) }) {
			w.allTop += len(oracleCover(space, setOf(t, space, h.Blocks...)))
		}
	}
	return w
}

// check asserts the invariants of one VPC result.
func (w *vpcWorld) check(t *testing.T, res VPCResult) {
	t.Helper()
	if res.Fits != (len(res.Routes) <= res.Budget) {
		t.Fatalf("budget %d: Fits = %v with %d routes", res.Budget, res.Fits, len(res.Routes))
	}
	if !slices.IsSortedFunc(res.Routes, func(a, b VPCRoute) int { return a.Dst.Addr().Compare(b.Dst.Addr()) }) {
		t.Fatalf("routes not sorted: %v", res.Routes)
	}
	var routeOf [256]int // 1 + index of the route covering each address
	for ri, r := range res.Routes {
		for i, in := range setOf(t, w.space, r.Dst) {
			if !in {
				continue
			}
			if routeOf[i] != 0 {
				t.Fatalf("%v and %v overlap", res.Routes[routeOf[i]-1], r)
			}
			routeOf[i] = ri + 1
		}
		// Invariant 3: a route covers only its target's space.
		var target addrSet
		if r.Group == "" {
			h := w.host(r.Host)
			target = setOf(t, w.space, h.Blocks...)
		} else {
			g, ok := groupOf(w.in, r.Group)
			if !ok || g.Mode != topology.ModeVPC {
				t.Fatalf("%v aggregates an unknown or non-vpc group", r)
			}
			target = setOf(t, w.space, g.Prefixes...)
			for _, d := range w.in.Groups {
				if isAtOrUnder(w.in, d.Path, g.Path) && d.Mode != topology.ModeVPC {
					t.Fatalf("%v aggregates %s mode group %s", r, d.Mode, d.Path)
				}
			}
			if want := w.singleOwner(g.Path); r.Host != want {
				t.Fatalf("%v: Host = %q, want %q (the only host with blocks)", r, r.Host, want)
			}
			// Delivery: an aggregate with several owners must be a subnet
			// (leaf), whose hosts route each other's blocks.
			if r.Host == "" && slices.ContainsFunc(w.in.Groups, func(c Group) bool { return c.Parent == g.Path }) {
				t.Fatalf("%v aggregates %s, which has subgroups and %d owners: its target cannot deliver", r, g.Path, w.owners(g.Path))
			}
		}
		for i, in := range setOf(t, w.space, r.Dst) {
			if in && !target[i] {
				t.Fatalf("%v covers %s outside its target", r, spaceAddr(w.space, i))
			}
		}
	}
	// Every block address of a table host reaches a route that delivers it
	// to its owner or its owner's group; no other host's block is routed.
	for i, o := range w.owner {
		if o == "" {
			continue
		}
		ri := routeOf[i] - 1
		if !w.inTable[o] {
			if ri >= 0 {
				t.Fatalf("%v covers %s of non-vpc host %s", res.Routes[ri], spaceAddr(w.space, i), o)
			}
			continue
		}
		if ri < 0 {
			t.Fatalf("%s of %s has no route in %v", spaceAddr(w.space, i), o, res.Routes)
		}
		r := res.Routes[ri]
		if r.Group == "" && r.Host != o || r.Group != "" && !isAtOrUnder(w.in, w.host(o).Group, r.Group) {
			t.Fatalf("%s of %s is routed by %v", spaceAddr(w.space, i), o, r)
		}
	}
	// DirectShare, recounted by longest match over every route.
	total, direct := 0, 0
	for _, h := range w.table {
		for _, a := range h.Endpoints {
			total++
			best := -1
			for ri, r := range res.Routes {
				if r.Dst.Contains(a) && (best < 0 || r.Dst.Bits() > res.Routes[best].Dst.Bits()) {
					best = ri
				}
			}
			if best < 0 {
				t.Fatalf("endpoint %s of %s has no route", a, h.Name)
			}
			if res.Routes[best].Host == h.Name {
				direct++
			}
		}
	}
	want := 1.0
	if total > 0 {
		want = float64(direct) / float64(total)
	} else {
		// No endpoints: every block address of a table host counts.
		owned, straight := 0, 0
		for i, o := range w.owner {
			if o == "" || !w.inTable[o] {
				continue
			}
			owned++
			a := spaceAddr(w.space, i)
			best := -1
			for ri, r := range res.Routes {
				if r.Dst.Contains(a) && (best < 0 || r.Dst.Bits() > res.Routes[best].Dst.Bits()) {
					best = ri
				}
			}
			if best >= 0 && res.Routes[best].Host == o {
				straight++
			}
		}
		if owned > 0 {
			want = float64(straight) / float64(owned)
		}
	}
	if res.DirectShare != want || res.DirectShare < 0 || res.DirectShare > 1 {
		t.Fatalf("DirectShare = %v, want %v (%d of %d)", res.DirectShare, want, direct, total)
	}
}

func (w *vpcWorld) host(name string) Host {
	for _, h := range w.in.Hosts {
		if h.Name == name {
			return h
		}
	}
	return Host{}
}

// owners counts the table hosts with blocks at or under group.
func (w *vpcWorld) owners(group string) int {
	n := 0
	for _, h := range w.table {
		if len(h.Blocks) > 0 && isAtOrUnder(w.in, h.Group, group) {
			n++
		}
	}
	return n
}

// singleOwner is the one table host with blocks at or under group, or "".
func (w *vpcWorld) singleOwner(group string) string {
	var owners []string
	for _, h := range w.table {
		if len(h.Blocks) > 0 && isAtOrUnder(w.in, h.Group, group) {
			owners = append(owners, h.Name)
		}
	}
	if len(owners) == 1 {
		return owners[0]
	}
	return ""
}

func TestVPCRandom(t *testing.T) {
	forSeeds(t, 500, func(t *testing.T, r *rand.Rand, space netip.Prefix) {
		in := randomInput(r, space)
		w := newVPCWorld(t, in, space)
		floor := MinVPCRoutes(in)
		if floor > w.allTop || floor > w.direct {
			t.Fatalf("MinVPCRoutes = %d, above all-top-most %d or direct %d", floor, w.allTop, w.direct)
		}
		mixed := shuffled(r, in)
		prev := VPCResult{}
		for budget := 0; budget <= w.direct+1; budget++ {
			res := VPC(in, budget)
			w.check(t, res)
			if again := VPC(mixed, budget); !slices.Equal(res.Routes, again.Routes) || res.DirectShare != again.DirectShare || res.Fits != again.Fits {
				t.Fatalf("budget %d: result depends on input order:\n%v\n%v", budget, res.Routes, again.Routes)
			}
			switch {
			case budget >= floor && !res.Fits:
				t.Fatalf("budget %d >= floor %d but %d routes", budget, floor, len(res.Routes))
			case budget < floor && (res.Fits || len(res.Routes) != floor):
				t.Fatalf("budget %d < floor %d: Fits = %v with %d routes", budget, floor, res.Fits, len(res.Routes))
			}
			if budget >= w.direct && slices.ContainsFunc(res.Routes, func(r VPCRoute) bool { return r.Group != "" }) {
				t.Fatalf("budget %d fits all %d direct routes but aggregates: %v", budget, w.direct, res.Routes)
			}
			// More budget never means more aggregation; a fitting table
			// is where a smaller budget stops too.
			if budget > 0 && (len(res.Routes) < len(prev.Routes) || res.DirectShare < prev.DirectShare) {
				t.Fatalf("budget %d: %d routes, share %v; budget %d had %d, %v", budget, len(res.Routes), res.DirectShare, budget-1, len(prev.Routes), prev.DirectShare)
			}
			if res.Fits && !slices.Equal(VPC(in, len(res.Routes)).Routes, res.Routes) {
				t.Fatalf("budget %d and budget %d give different tables", budget, len(res.Routes))
			}
			prev = res
		}

		// Against the oracle: direct routes are each host's cover, and
		// aggregates are each group's cover.
		for _, res := range []VPCResult{VPC(in, w.direct), VPC(in, 0)} {
			byTarget := map[string][]netip.Prefix{}
			for _, r := range res.Routes {
				key := "host " + r.Host
				if r.Group != "" {
					key = "group " + r.Group
				}
				byTarget[key] = append(byTarget[key], r.Dst)
			}
			for key, got := range byTarget {
				var want []netip.Prefix
				if name, ok := strings.CutPrefix(key, "host "); ok {
					want = oracleCover(space, setOf(t, space, w.host(name).Blocks...))
				} else {
					g, _ := groupOf(in, key[len("group "):])
					want = oracleCover(space, setOf(t, space, g.Prefixes...))
				}
				if !slices.Equal(got, want) {
					t.Fatalf("budget %d: routes for %s = %v, want %v", res.Budget, key, got, want)
				}
			}
		}
	})
}
