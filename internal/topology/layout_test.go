package topology

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/netx"
)

func mkGroups(weights ...int) []*Group {
	gs := make([]*Group, len(weights))
	for i, w := range weights {
		gs[i] = &Group{Name: fmt.Sprintf("g%d", i), SrcPath: fmt.Sprintf("topologies[0].groups[%d]", i), Weight: w}
	}
	return gs
}

func noPins(*Group) netip.Prefix { return netip.Prefix{} }

func pins(m map[int]string, gs []*Group) func(*Group) netip.Prefix {
	return func(g *Group) netip.Prefix {
		for i, s := range m {
			if gs[i] == g {
				return netip.MustParsePrefix(s)
			}
		}
		return netip.Prefix{}
	}
}

func homesOf(gs []*Group, homes map[*Group]netip.Prefix) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		if h, ok := homes[g]; ok {
			out[i] = h.String()
		} else {
			out[i] = "none"
		}
	}
	return out
}

func TestLayout(t *testing.T) {
	tests := []struct {
		name    string
		parent  string
		block   int
		weights []int
		pinned  map[int]string
		want    []string
		errs    []string // "path: phrase"
	}{
		{name: "one group takes the parent", parent: "10.0.0.0/16", block: 26, weights: []int{1},
			want: []string{"10.0.0.0/16"}},
		{name: "two halves", parent: "10.0.0.0/16", block: 26, weights: []int{1, 1},
			want: []string{"10.0.0.0/17", "10.0.128.0/17"}},
		// Romana's split: 3 groups take slots 0..2 of 4; slot 3 is padding.
		{name: "romana three of four", parent: "10.0.0.0/16", block: 26, weights: []int{1, 1, 1},
			want: []string{"10.0.0.0/18", "10.0.64.0/18", "10.0.128.0/18"}},
		{name: "romana five of eight", parent: "10.0.0.0/16", block: 26, weights: []int{1, 1, 1, 1, 1},
			want: []string{"10.0.0.0/19", "10.0.32.0/19", "10.0.64.0/19", "10.0.96.0/19", "10.0.128.0/19"}},
		// A zero weight counts as one, as Compile's effective weight does.
		{name: "zero weight is one", parent: "10.0.0.0/16", block: 26, weights: []int{0, 1},
			want: []string{"10.0.0.0/17", "10.0.128.0/17"}},
		// Weighted: 2 of 4 gets a half, the others a quarter each; packed
		// largest first whatever the file order.
		{name: "weighted", parent: "10.0.0.0/16", block: 26, weights: []int{1, 2, 1},
			want: []string{"10.0.128.0/18", "10.0.0.0/17", "10.0.192.0/18"}},
		// A share between powers of two rounds down: 3/4 -> 1/2, 1/4 -> 1/4.
		{name: "weighted rounds down", parent: "10.0.0.0/16", block: 26, weights: []int{3, 1},
			want: []string{"10.0.0.0/17", "10.0.128.0/18"}},
		{name: "weighted by expected hosts", parent: "10.0.0.0/24", block: 28, weights: []int{40, 10, 10},
			want: []string{"10.0.0.0/25", "10.0.0.128/27", "10.0.0.160/27"}},
		{name: "weight forces a home below a block", parent: "10.0.0.0/24", block: 26, weights: []int{7, 1},
			want: []string{"10.0.0.0/25", "none"},
			errs: []string{"topologies[0].groups[1]: prefix /27 is smaller than block size /26"}},
		// Pinned groups keep their prefix; the others pack around it.
		{name: "pinned in the middle", parent: "10.0.0.0/16", block: 26, weights: []int{1, 1, 1, 1},
			pinned: map[int]string{0: "10.0.64.0/18"},
			want:   []string{"10.0.64.0/18", "10.0.0.0/18", "10.0.128.0/18", "10.0.192.0/18"}},
		{name: "pinned small, unpinned skip over it", parent: "10.0.0.0/16", block: 26, weights: []int{1, 1, 1},
			pinned: map[int]string{1: "10.0.0.0/24"},
			want:   []string{"10.0.128.0/17", "10.0.0.0/24", "10.0.64.0/18"}},
		{name: "pinned crowd shrinks the unpinned", parent: "10.0.0.0/16", block: 26, weights: []int{1, 1, 1},
			pinned: map[int]string{0: "10.0.0.0/17", 1: "10.0.128.0/18"},
			want:   []string{"10.0.0.0/17", "10.0.128.0/18", "10.0.192.0/18"}},
		// Shares are of the whole parent; when pins leave too little room,
		// every unpinned group halves its share (keeping the ratios).
		{name: "pinned half, the others share the rest", parent: "10.0.0.0/16", block: 26, weights: []int{1, 1, 1},
			pinned: map[int]string{0: "10.0.0.0/17"},
			want:   []string{"10.0.0.0/17", "10.0.128.0/18", "10.0.192.0/18"}},
		{name: "no room beside pins", parent: "10.0.0.0/16", block: 26, weights: []int{1, 1, 1},
			pinned: map[int]string{0: "10.0.0.0/17", 1: "10.0.128.0/17"},
			want:   []string{"10.0.0.0/17", "10.0.128.0/17", "none"},
			errs:   []string{"topologies[0].groups[2]: no room left in 10.0.0.0/16 for a prefix of at least one block (/26)"}},
		{name: "pinned overlap", parent: "10.0.0.0/16", block: 26, weights: []int{1, 1},
			pinned: map[int]string{0: "10.0.0.0/17", 1: "10.0.64.0/18"},
			want:   []string{"10.0.0.0/17", "none"},
			errs:   []string{`topologies[0].groups[1].prefix: 10.0.64.0/18 overlaps 10.0.0.0/17, the prefix of sibling group "g0"`}},
		{name: "pinned outside parent", parent: "10.0.0.0/17", block: 26, weights: []int{1},
			pinned: map[int]string{0: "10.0.128.0/18"},
			want:   []string{"none"},
			errs:   []string{"topologies[0].groups[0].prefix: 10.0.128.0/18 is outside the parent's prefix 10.0.0.0/17"}},
		{name: "ipv6 romana split", parent: "fd00:10::/48", block: 120, weights: []int{1, 1, 1},
			want: []string{"fd00:10::/50", "fd00:10:0:4000::/50", "fd00:10:0:8000::/50"}},
		{name: "ipv6 weighted with pin", parent: "fd00:10::/48", block: 120, weights: []int{1, 1, 2},
			pinned: map[int]string{0: "fd00:10:0:8000::/49"},
			want:   []string{"fd00:10:0:8000::/49", "fd00:10:0:4000::/51", "fd00:10::/50"}},
		// Weights near the int limit must neither overflow nor loop forever.
		{name: "huge weights", parent: "10.0.0.0/16", block: 26, weights: []int{math.MaxInt - 10, 3},
			want: []string{"10.0.0.0/17", "none"},
			errs: []string{"topologies[0].groups[1]: prefix /78 is smaller than block size /26"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gs := mkGroups(tt.weights...)
			pin := noPins
			if tt.pinned != nil {
				pin = pins(tt.pinned, gs)
			}
			homes, errs := Layout(netip.MustParsePrefix(tt.parent), tt.block, gs, pin)
			if got := homesOf(gs, homes); strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("homes %v, want %v", got, tt.want)
			}
			var gotErrs []string
			for _, e := range errs {
				gotErrs = append(gotErrs, e.Error())
			}
			if len(gotErrs) != len(tt.errs) {
				t.Fatalf("errors %q, want %q", gotErrs, tt.errs)
			}
			for i, w := range tt.errs {
				if !strings.HasPrefix(gotErrs[i], w) {
					t.Errorf("error %q, want prefix %q", gotErrs[i], w)
				}
			}
		})
	}
}

// TestLayoutPaddingIsNobodys: the slots past the last group belong to no
// group, at every level of a compiled tree.
func TestLayoutPaddingIsNobodys(t *testing.T) {
	top := mustLoad(t, []byte(`
networks:
  - {name: a, cidr: 10.0.0.0/16, blockSize: 26}
topologies:
  - networks: [a]
    groups:
      - {name: z1, groups: [{name: r1}, {name: r2}, {name: r3}]}
      - {name: z2}
      - {name: z3}
`))
	n := top.Network("a")
	for _, pad := range []string{"10.0.192.0/18", "10.0.48.0/20"} {
		p := netip.MustParsePrefix(pad)
		for g, h := range n.Homes {
			if h.Overlaps(p) && g.IsLeaf() {
				t.Errorf("padding %s overlaps leaf %s's home %s", p, g.Path, h)
			}
			if h.Overlaps(p) && !netx.Covers(h, p) {
				t.Errorf("padding %s straddles %s's home %s", p, g.Path, h)
			}
		}
	}
}

// TestLayoutDeepIPv6Terminates: an unpinned group squeezed into the last
// block of an IPv6 parent whose other space is pinned, so that the search
// goes deeper than 64 bits below the parent. Slot indexes there do not fit
// 64 bits; an earlier search by slot index wrapped around and looped forever.
func TestLayoutDeepIPv6Terminates(t *testing.T) {
	parent := netip.MustParsePrefix("fd00::/48")
	const block = 120
	var pinnedTo []netip.Prefix
	addr := parent.Addr()
	for bits := 49; bits <= block; bits++ {
		p := netip.PrefixFrom(addr, bits)
		pinnedTo = append(pinnedTo, p)
		addr = netx.AddOffset(addr, 1, 128-bits)
	}
	last := netip.PrefixFrom(addr, block) // the one block left over
	gs := mkGroups(make([]int, len(pinnedTo)+1)...)
	pin := func(g *Group) netip.Prefix {
		for i := range pinnedTo {
			if gs[i] == g {
				return pinnedTo[i]
			}
		}
		return netip.Prefix{}
	}
	done := make(chan map[*Group]netip.Prefix, 1)
	go func() {
		homes, errs := Layout(parent, block, gs, pin)
		if len(errs) > 0 {
			t.Errorf("errors: %v", errs)
		}
		done <- homes
	}()
	select {
	case homes := <-done:
		if got := homes[gs[len(gs)-1]]; got != last {
			t.Errorf("unpinned group got %v, want the last free block %s", got, last)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Layout did not return within 10s")
	}
}

// TestLayoutProperties compiles random trees (IPv4 and IPv6, random fan-out,
// depth, weights and pins) and checks every compiled model against the
// invariants, and every failure against the layout errors it may have.
// Unpinned, unweighted levels must match Romana's split exactly.
func TestLayoutProperties(t *testing.T) {
	layoutPhrases := []string{"address bits", "smaller than block size", "no room left", "overlaps", "outside the parent's prefix", "is not inside network"}
	for seed := uint64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 0x7e77a1e))
			ok, failed := 0, 0
			for iter := 0; iter < 300; iter++ {
				s := randomSpec(r)
				top, err := Compile(s)
				if err != nil {
					for _, e := range fieldErrors(t, err) {
						if !containsAny(e.Msg, layoutPhrases) {
							t.Fatalf("iteration %d: unexpected error %v", iter, e)
						}
					}
					failed++
					continue
				}
				ok++
				assertInvariants(t, top)
				checkRomanaSplit(t, top)
			}
			if ok < 100 {
				t.Errorf("only %d of %d random trees compiled; the generator is too harsh", ok, ok+failed)
			}
		})
	}
}

func containsAny(s string, subs []string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

// checkRomanaSplit is the brute-force oracle for levels without pins: a
// group of weight w among siblings of total weight W gets the parent's
// 1/2^n with n the least such that w*2^n >= W, packed largest first in file
// order; with equal weights group i takes slot i.
func checkRomanaSplit(t *testing.T, top *Topology) {
	t.Helper()
	for _, tr := range top.Trees {
		for _, n := range tr.Networks {
			level := func(parent netip.Prefix, gs []*Group) {
				total := 0
				for _, g := range gs {
					if g.Pinned.IsValid() {
						return
					}
					total += g.Weight
				}
				equal := true
				for _, g := range gs {
					equal = equal && g.Weight == gs[0].Weight
					k := 0
					for g.Weight<<k < total {
						k++
					}
					if h := n.Homes[g]; h.Bits() != parent.Bits()+k {
						t.Errorf("%s in %s: home %s, want a /%d (weight %d of %d)", g.Path, n.Name, h, parent.Bits()+k, g.Weight, total)
					}
				}
				if !equal {
					return
				}
				for i, g := range gs {
					want, _ := netx.Nth(parent, n.Homes[g].Bits(), uint64(i))
					if n.Homes[g] != want {
						t.Errorf("%s in %s: home %s, want slot %d: %s", g.Path, n.Name, n.Homes[g], i, want)
					}
				}
			}
			level(n.CIDR, tr.Groups)
			for _, g := range tr.All {
				if h, ok := n.Homes[g]; ok && len(g.Children) > 0 {
					level(h, g.Children)
				}
			}
		}
	}
}

// randomSpec builds a random but well-formed spec: one or two trees over
// one to three networks, IPv4 or IPv6, with random weights and pins.
func randomSpec(r *rand.Rand) *Spec {
	s := &Spec{}
	nets := 1 + r.IntN(3)
	for i := range nets {
		var cidr string
		var block int
		if r.IntN(3) == 0 {
			plen := 32 + r.IntN(80)
			cidr = fmt.Sprintf("fd%02x:%x::/%d", i, r.IntN(0x10000), min(plen, 32))
			block = 112 + r.IntN(17)
		} else {
			plen := 8 + r.IntN(17)
			cidr = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(10 + i), 0, 0, 0}), plen).Masked().String()
			block = max(plen, 16) + r.IntN(32-max(plen, 16)+1)
		}
		s.Networks = append(s.Networks, NetworkSpec{Name: fmt.Sprintf("n%d", i), CIDR: cidr, BlockSize: block})
	}
	var names []string
	for _, n := range s.Networks {
		names = append(names, n.Name)
	}
	if nets > 1 && r.IntN(2) == 0 {
		cut := 1 + r.IntN(nets-1)
		s.Topologies = []TreeSpec{{Networks: names[:cut]}, {Networks: names[cut:]}}
	} else {
		s.Topologies = []TreeSpec{{Networks: names}}
	}
	for ti := range s.Topologies {
		first := s.Networks[0]
		for _, n := range s.Networks {
			if n.Name == s.Topologies[ti].Networks[0] {
				first = n
			}
		}
		s.Topologies[ti].Groups = randomGroups(r, netip.MustParsePrefix(first.CIDR), 1+r.IntN(3), "g")
	}
	return s
}

func randomGroups(r *rand.Rand, within netip.Prefix, depth int, prefix string) []GroupSpec {
	k := 1 + r.IntN(5)
	gs := make([]GroupSpec, k)
	for i := range gs {
		g := &gs[i]
		g.Name = fmt.Sprintf("%s%d", prefix, i)
		switch r.IntN(6) {
		case 0:
			g.Weight = 1 + r.IntN(8)
		case 1:
			g.ExpectedHosts = 1 + r.IntN(100)
		}
		if r.IntN(8) == 0 {
			// A pin somewhere inside the first network: it may clash with a
			// sibling's or fall outside the parent's home, which Compile
			// must then report.
			extra := r.IntN(min(8, netx.HostBits(within)) + 1)
			sub, _ := netx.Nth(within, within.Bits()+extra, r.Uint64N(1<<extra))
			g.Prefix = sub.String()
		}
		if depth > 1 && r.IntN(2) == 0 {
			g.Groups = randomGroups(r, within, depth-1, g.Name+"-")
		}
		if r.IntN(3) == 0 {
			g.Assignment = &SelectorSpec{MatchLabels: map[string]string{"level": g.Name}}
		}
	}
	return gs
}

// naiveLowestFree is the oracle for freeSpace.take: try every slot of
// length bits in order (small parents only).
func naiveLowestFree(parent netip.Prefix, bits int, used []netip.Prefix) netip.Prefix {
	for i := uint64(0); ; i++ {
		cand, ok := netx.Nth(parent, bits, i)
		if !ok {
			return netip.Prefix{}
		}
		free := true
		for _, u := range used {
			if u.Overlaps(cand) {
				free = false
				break
			}
		}
		if free {
			return cand
		}
	}
}

// TestFreeSpaceMatchesOracle: random pins, then random takes, compared
// with a scan of every slot.
func TestFreeSpaceMatchesOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	for iter := 0; iter < 2000; iter++ {
		parent := netip.MustParsePrefix("10.0.0.0/20")
		if iter%2 == 1 {
			parent = netip.MustParsePrefix("fd00::/116")
		}
		block := parent.Bits() + 1 + r.IntN(8)
		var used []netip.Prefix
		for range r.IntN(6) {
			bits := parent.Bits() + 1 + r.IntN(block-parent.Bits())
			p, _ := netx.Nth(parent, bits, r.Uint64N(1<<(bits-parent.Bits())))
			if naiveLowestFree(p, p.Bits(), used) == p { // not overlapping earlier pins
				used = append(used, p)
			}
		}
		fs := newFreeSpace(parent, used)
		for range 1 + r.IntN(12) {
			bits := parent.Bits() + r.IntN(block-parent.Bits()+1)
			want := naiveLowestFree(parent, bits, used)
			got := fs.take(bits)
			if got != want {
				t.Fatalf("iteration %d: parent %s used %v: take(/%d) = %v, want %v", iter, parent, used, bits, got, want)
			}
			if got.IsValid() {
				used = append(used, got)
			}
		}
	}
}
