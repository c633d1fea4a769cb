package routing

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// What each level must do, worked out address by address from the input
// in the test's own way, and turned into an acceptance for the optimum
// oracle (ortc_test.go). Targets are named; names index the acceptance.

type levelWorld struct {
	space netip.Prefix
	names []string // target names: "host:NAME" or "group:PATH"
	ac    *acceptance
}

func newLevelWorld(space netip.Prefix, names []string) *levelWorld {
	n := 256
	w := &levelWorld{space: space, names: names, ac: &acceptance{n: n, targets: len(names), any: make([]bool, n), dflt: make([]bool, n), ok: make([][]bool, n)}}
	for i := range n {
		w.ac.ok[i] = make([]bool, len(names))
		w.ac.dflt[i] = true // until said otherwise
	}
	return w
}

func (w *levelWorld) target(name string) int { return slices.Index(w.names, name) }

func (w *levelWorld) accept(i int, names ...string) {
	w.ac.dflt[i] = false
	for _, n := range names {
		w.ac.ok[i][w.target(n)] = true
	}
}

func (w *levelWorld) free(i int) { w.ac.dflt[i], w.ac.any[i] = false, true }

// check asserts that longest match over routes (named targets) gives every
// address what it accepts and that there are exactly as many routes as
// the optimum.
func (w *levelWorld) check(t *testing.T, what string, routes []netx.TargetRoute) {
	t.Helper()
	if err := w.ac.satisfied(w.space, routes); err != nil {
		t.Fatalf("%s: %v in %v (targets %v)", what, err, routes, w.names)
	}
	if opt := w.ac.optimum(); len(routes) != opt {
		t.Fatalf("%s: %d routes %v, optimum %d (targets %v): emitted ÷ optimal = %.2f", what, len(routes), routes, opt, w.names, float64(len(routes))/float64(opt))
	}
}

// deepestGroup is the group whose prefix holding address i is longest (of
// equal prefixes the deeper group), or nil.
func deepestGroup(t *testing.T, in Input, space netip.Prefix, i int) *Group {
	var best *Group
	bestBits, bestDepth := -1, -1
	for gi := range in.Groups {
		g := &in.Groups[gi]
		depth := 0
		for p := g.Path; p != ""; depth++ {
			pg, _ := groupOf(in, p)
			p = pg.Parent
		}
		for _, q := range g.Prefixes {
			if setOf(t, space, q)[i] && (q.Bits() > bestBits || q.Bits() == bestBits && depth > bestDepth) {
				best, bestBits, bestDepth = g, q.Bits(), depth
			}
		}
	}
	return best
}

// owners maps each address to the host whose block holds it ("" none).
func owners(t *testing.T, in Input, space netip.Prefix) [256]string {
	var o [256]string
	for _, h := range in.Hosts {
		for i, ok := range setOf(t, space, h.Blocks...) {
			if ok {
				o[i] = h.Name
			}
		}
	}
	return o
}

func hostByName(in Input, name string) Host {
	for _, h := range in.Hosts {
		if h.Name == name {
			return h
		}
	}
	return Host{}
}

// vpcWorld is what the VPC table must do: a table host's block goes to its
// owner or (when the owner's leaf is a subnet of one segment, and direct
// says no) any host of that subnet; vpc group space no block holds is
// free; everything else matches no route.
func vpcWorld(t *testing.T, in Input, space netip.Prefix, direct bool) *levelWorld {
	inTable := func(h Host) bool {
		if h.Mode != topology.ModeVPC {
			return false
		}
		for p := h.Group; p != ""; {
			g, ok := groupOf(in, p)
			if !ok {
				return false
			}
			if g.Mode == topology.ModeVPC {
				return true
			}
			p = g.Parent
		}
		return false
	}
	// A host of a vpc leaf without a segment is on the leaf's.
	segment := func(h Host) string {
		if h.Segment == "" {
			return h.Group
		}
		return h.Segment
	}
	subnet := func(h Host) string {
		g, ok := groupOf(in, h.Group)
		if direct || !ok || g.Mode != topology.ModeVPC {
			return ""
		}
		for _, o := range in.Groups {
			if o.Parent == g.Path {
				return ""
			}
		}
		for _, o := range in.Hosts {
			if o.Group == h.Group && (!inTable(o) || segment(o) != segment(h)) {
				return ""
			}
		}
		return g.Path
	}
	var names []string
	for _, h := range in.Hosts {
		if inTable(h) {
			names = append(names, "host:"+h.Name)
			if s := subnet(h); s != "" && !slices.Contains(names, "group:"+s) {
				names = append(names, "group:"+s)
			}
		}
	}
	w := newLevelWorld(space, names)
	own := owners(t, in, space)
	for i := range 256 {
		if own[i] == "" {
			if g := deepestGroup(t, in, space, i); g != nil && g.Mode == topology.ModeVPC {
				w.free(i)
			}
			continue
		}
		h := hostByName(in, own[i])
		if !inTable(h) {
			continue
		}
		w.accept(i, "host:"+h.Name)
		if s := subnet(h); s != "" {
			w.accept(i, "group:"+s)
		}
	}
	return w
}

func (w *levelWorld) vpcRoutes(rs []VPCRoute) []netx.TargetRoute {
	var out []netx.TargetRoute
	for _, r := range rs {
		name := "host:" + r.Host
		if r.Group != "" {
			name = "group:" + r.Group
		}
		out = append(out, netx.TargetRoute{Prefix: r.Dst, Target: w.target(name)})
	}
	return out
}

func TestVPCRandom(t *testing.T) {
	forSeeds(t, 500, func(t *testing.T, r *rand.Rand, space netip.Prefix) {
		in := randomInput(r, space)
		relaxed := vpcWorld(t, in, space, false)
		strict := vpcWorld(t, in, space, true)
		opt, directOpt := relaxed.ac.optimum(), strict.ac.optimum()
		if n := MinVPCRoutes(in); n != opt {
			t.Fatalf("MinVPCRoutes = %d, optimum %d", n, opt)
		}
		// The optimum, and the all-direct optimum when it fits.
		relaxed.check(t, "VPC(in, 0)", relaxed.vpcRoutes(VPC(in, 0).Routes))
		res := VPC(in, directOpt)
		strict.check(t, "VPC(in, direct optimum)", strict.vpcRoutes(res.Routes))
		if res.DirectShare != 1 {
			t.Fatalf("all direct, DirectShare = %v", res.DirectShare)
		}
		mixed := shuffled(r, in)
		prev := -1
		for budget := 0; budget <= directOpt+1; budget++ {
			res := VPC(in, budget)
			// Forwarding: whatever the budget, every block address of a
			// table host reaches a host that delivers it, nothing else
			// is captured.
			if err := relaxed.ac.satisfied(space, relaxed.vpcRoutes(res.Routes)); err != nil {
				t.Fatalf("budget %d: %v in %v", budget, err, res.Routes)
			}
			if res.Fits != (len(res.Routes) <= budget) || res.Fits != (budget >= opt) {
				t.Fatalf("budget %d, optimum %d: Fits = %v with %d routes", budget, opt, res.Fits, len(res.Routes))
			}
			if !slices.IsSortedFunc(res.Routes, func(a, b VPCRoute) int { return a.Dst.Addr().Compare(b.Dst.Addr()) }) {
				t.Fatalf("routes not sorted: %v", res.Routes)
			}
			for _, rt := range res.Routes {
				if rt.Group != "" {
					want := ""
					for _, h := range in.Hosts {
						if h.Group == rt.Group && len(h.Blocks) > 0 {
							if want == "" {
								want = h.Name
							} else {
								want = "-"
							}
						}
					}
					if want == "-" {
						want = ""
					}
					if rt.Host != want {
						t.Fatalf("%v: Host = %q, want %q (the subnet's only owner)", rt, rt.Host, want)
					}
				}
			}
			if again := VPC(mixed, budget); !slices.Equal(res.Routes, again.Routes) || res.DirectShare != again.DirectShare {
				t.Fatalf("budget %d: result depends on input order:\n%v\n%v", budget, res.Routes, again.Routes)
			}
			// More budget never means more aggregation.
			if prev >= 0 && len(res.Routes) < prev {
				t.Fatalf("budget %d: %d routes, fewer than budget %d's %d", budget, len(res.Routes), budget-1, prev)
			}
			prev = len(res.Routes)
			checkDirectShare(t, in, res)
		}
	})
}

// checkDirectShare recounts DirectShare by longest match over every route.
func checkDirectShare(t *testing.T, in Input, res VPCResult) {
	t.Helper()
	longest := func(a netip.Addr) (VPCRoute, bool) {
		best := -1
		for ri, r := range res.Routes {
			if r.Dst.Contains(a) && (best < 0 || r.Dst.Bits() > res.Routes[best].Dst.Bits()) {
				best = ri
			}
		}
		if best < 0 {
			return VPCRoute{}, false
		}
		return res.Routes[best], true
	}
	var table []Host
	for _, h := range in.Hosts {
		if h.Mode == topology.ModeVPC {
			if g, ok := groupOf(in, h.Group); ok && (g.Mode == topology.ModeVPC || slices.ContainsFunc(in.Groups, func(a Group) bool { return a.Mode == topology.ModeVPC && isAtOrUnder(in, h.Group, a.Path) })) {
				table = append(table, h)
			}
		}
	}
	total, direct := 0, 0
	for _, h := range table {
		for _, a := range h.Endpoints {
			total++
			if r, ok := longest(a); ok && r.Host == h.Name {
				direct++
			}
		}
	}
	want := 1.0
	if total > 0 {
		want = float64(direct) / float64(total)
	} else {
		var size, straight float64
		for _, h := range table {
			for _, b := range h.Blocks {
				n := float64(uint64(1) << (b.Addr().BitLen() - b.Bits()))
				size += n
				// A block lies whole under its longest match here: routes
				// are never longer than a block.
				if r, ok := longest(b.Addr()); ok && r.Host == h.Name && r.Dst.Bits() <= b.Bits() {
					straight += n
				}
			}
		}
		if size > 0 {
			want = straight / size
		}
	}
	if res.DirectShare != want {
		t.Fatalf("DirectShare = %v, want %v", res.DirectShare, want)
	}
}
