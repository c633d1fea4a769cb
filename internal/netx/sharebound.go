package netx

import (
	"math/bits"
	"slices"
)

// ShareRoutesBound is a lower bound on the number of routes any
// longest-prefix-match table needs to give each of n targets at least
// need units of a power-of-two space of total units, when no route is
// finer than a unit. (In a VPC table the unit is the block: a route finer
// than a block could only split one block between two hosts.) It returns
// 0 when n·need exceeds total: then no table at all can.
//
// Why it holds. A table's prefixes nest or are disjoint, so they form a
// forest; drop every route whose parent has its target (it changes
// nothing). Target t is then sent
//
//	v_t = Σ |r| over t's routes  −  Σ |c| over the children c of t's routes,
//
// a signed sum of powers of two with own_t positive and ch_t negative
// terms. Every route is a positive term once and, unless it is a root, a
// negative term once, so
//
//	Σ_t (own_t + ch_t) = 2R − roots,   Σ_t (own_t − ch_t) = roots ≥ 1,
//
// while v_t ≥ need and Σ_t v_t ≤ total (the targets' spaces are
// disjoint). Which (own, ch) can make a v in [need, total − (n−1)·need]
// is enumerated exactly for own + ch ≤ exactTerms; beyond that every
// split is taken to reach v = need, which only loosens the bound. A
// single root holds every routed unit; when that is more than half the
// space it is the space itself, and its target carries that term. A
// dynamic programme over the targets then finds the smallest R for which
// every constraint can hold at once. TestShareRoutesBound checks it
// against an exhaustive search on small spaces.
func ShareRoutesBound(n, need, total int) int {
	if n <= 0 || need <= 0 || total <= 0 || total&(total-1) != 0 {
		return 0
	}
	hi := total - (n-1)*need
	if hi < need {
		return 0
	}
	// Feasibility only loosens as R grows: search for the first R.
	lo, up := n, 2*n+bits.Len(uint(total))
	for lo < up {
		mid := (lo + up) / 2
		if shareFeasible(n, need, total, hi, mid) {
			up = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// exactTerms is how many terms per target ShareRoutesBound enumerates
// exactly.
const exactTerms = 7

// shareOption is one target's (own − ch, own + ch, smallest v ≥ need).
type shareOption struct{ d, s, v int }

func shareFeasible(n, need, total, hi, r int) bool {
	maxS := 2*r - 1 - 2*(n-1) // every other target takes at least two terms
	if maxS < 1 {
		return false
	}
	opts, rootOpts := shareOptions(need, total, hi, maxS)
	// best[root][s][d+off] is the least Σ v over the targets so far.
	const inf = int(^uint(0) >> 2)
	off := 2 * r
	width := 4*r + 1
	mk := func() [2][][]int {
		var t [2][][]int
		for f := range t {
			t[f] = make([][]int, 2*r+1)
			for s := range t[f] {
				t[f][s] = slices.Repeat([]int{inf}, width)
			}
		}
		return t
	}
	best := mk()
	best[0][0][off] = 0
	singleRootIsSpace := 2*n*need > total
	for range n {
		next := mk()
		for f := range 2 {
			for s, row := range best[f] {
				for di, c := range row {
					if c == inf {
						continue
					}
					add := func(o shareOption, nf int) {
						ns, nd := s+o.s, di+o.d
						if ns > 2*r || nd < 0 || nd >= width || c+o.v > total {
							return
						}
						if c+o.v < next[nf][ns][nd] {
							next[nf][ns][nd] = c + o.v
						}
					}
					for _, o := range opts {
						add(o, f)
					}
					if f == 0 && singleRootIsSpace {
						for _, o := range rootOpts {
							add(o, 1)
						}
					}
				}
			}
		}
		best = next
	}
	for f := range 2 {
		for s, row := range best[f] {
			for di, c := range row {
				roots := di - off
				if c == inf || roots < 1 || s > 2*r-roots {
					continue
				}
				if roots == 1 && singleRootIsSpace && f == 0 {
					continue // the one root is the space: some target owns it
				}
				return true
			}
		}
	}
	return false
}

// shareOptions lists what one target can be sent with own positive and ch
// negative terms, own + ch ≤ maxS: exactly up to exactTerms, and beyond
// it the loosest (v = need). rootOpts are those with one positive term
// equal to the whole space.
func shareOptions(need, total, hi, maxS int) (opts, rootOpts []shareOption) {
	powers := func(max int) []int {
		var p []int
		for x := 1; x <= max; x <<= 1 {
			p = append(p, x)
		}
		return p
	}
	memo := map[[2]int][]int{}
	sums := func(k int, ps []int) []int {
		key := [2]int{k, len(ps)}
		if out, ok := memo[key]; ok {
			return out
		}
		set := map[int]bool{0: true}
		for range k {
			nx := map[int]bool{}
			for a := range set {
				for _, p := range ps {
					if a+p <= 2*total {
						nx[a+p] = true
					}
				}
			}
			set = nx
		}
		out := make([]int, 0, len(set))
		for a := range set {
			out = append(out, a)
		}
		slices.Sort(out)
		memo[key] = out
		return out
	}
	own := powers(total)
	child := powers(total / 2)
	// smallest a − b in [need, hi] with a from as (plus extra) and b from bs.
	least := func(as []int, extra int, bs []int) (int, bool) {
		v, ok := 0, false
		for _, a := range as {
			a += extra
			// the largest b ≤ a − need
			i, found := slices.BinarySearch(bs, a-need)
			if !found {
				i--
			}
			if i < 0 {
				continue
			}
			if x := a - bs[i]; x <= hi && (!ok || x < v) {
				v, ok = x, true
			}
		}
		return v, ok
	}
	for s := 1; s <= maxS; s++ {
		for o := 1; o <= s; o++ {
			c := s - o
			if s > exactTerms {
				opts = append(opts, shareOption{o - c, s, need})
				rootOpts = append(rootOpts, shareOption{o - c, s, need})
				continue
			}
			bs := sums(c, child)
			if v, ok := least(sums(o, own), 0, bs); ok {
				opts = append(opts, shareOption{o - c, s, v})
			}
			if v, ok := least(sums(o-1, own), total, bs); ok {
				rootOpts = append(rootOpts, shareOption{o - c, s, v})
			}
		}
	}
	return pareto(opts), pareto(rootOpts)
}

// pareto keeps, for each d, only the options no other option with that d
// beats on both terms and units: using fewer terms never hurts.
func pareto(opts []shareOption) []shareOption {
	slices.SortFunc(opts, func(a, b shareOption) int {
		if a.d != b.d {
			return a.d - b.d
		}
		if a.s != b.s {
			return a.s - b.s
		}
		return a.v - b.v
	})
	var out []shareOption
	for _, o := range opts {
		if n := len(out); n > 0 && out[n-1].d == o.d && out[n-1].v <= o.v {
			continue
		}
		out = append(out, o)
	}
	return out
}
