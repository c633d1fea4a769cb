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
