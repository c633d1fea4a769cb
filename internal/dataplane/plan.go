package dataplane

import (
	"net/netip"
	"slices"
)

// Plan computes the changes that turn the actual routes into the desired ones.
// It is pure and deterministic: the result depends only on the two sets, not
// their order, and each list of the Diff is sorted.
//
// Routes are compared in normalized form. A destination with an actual route
// that satisfies the desired one is left alone; one whose actual route
// differs is replaced in place (Replaced); a destination with no actual route
// is Added; every other actual route — to a destination no longer desired, or
// a surplus route beside the one kept — is Removed. Desired routes are
// expected to have distinct destinations (State.Validate checks it); if not,
// the first in sorted order wins.
func Plan(desired, actual []Route) Diff {
	want := normalizeAll(desired)
	want = slices.CompactFunc(want, func(a, b Route) bool { return a.Dst == b.Dst })
	have := slices.Compact(normalizeAll(actual))

	byDst := make(map[netip.Prefix][]Route, len(have))
	for _, r := range have {
		byDst[r.Dst] = append(byDst[r.Dst], r)
	}
	var d Diff
	for _, w := range want {
		hs := byDst[w.Dst]
		delete(byDst, w.Dst)
		if len(hs) == 0 {
			d.Added = append(d.Added, w)
			continue
		}
		keep := slices.IndexFunc(hs, func(h Route) bool { return satisfies(w, h) })
		if keep < 0 {
			keep = 0
			d.Replaced = append(d.Replaced, Replacement{From: hs[0], To: w})
		}
		for i, h := range hs {
			if i != keep {
				d.Removed = append(d.Removed, h)
			}
		}
	}
	for _, hs := range byDst {
		d.Removed = append(d.Removed, hs...)
	}
	slices.SortFunc(d.Removed, CompareRoutes)
	return d
}

// normalizeAll returns the normalized routes, sorted.
func normalizeAll(rs []Route) []Route {
	out := make([]Route, len(rs))
	for i, r := range rs {
		out[i] = r.Normalize()
	}
	slices.SortFunc(out, CompareRoutes)
	return out
}

// Writes are d's additions and replacements in the order that makes before
// it breaks: longest destination first, so a route that covers an address
// is written only once the address's own (longest) route of the new set is
// in place — at every step each address follows its old route or its new
// one, never a new aggregate ahead of its exception. Removals come after
// every write.
func (d Diff) Writes() []Replacement {
	out := make([]Replacement, 0, len(d.Added)+len(d.Replaced))
	for _, r := range d.Added {
		out = append(out, Replacement{To: r})
	}
	out = append(out, d.Replaced...)
	slices.SortStableFunc(out, func(a, b Replacement) int { return b.To.Dst.Bits() - a.To.Dst.Bits() })
	return out
}
