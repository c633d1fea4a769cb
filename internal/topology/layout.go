package topology

import (
	"net/netip"
	"sort"
	"strings"

	"go4.org/netipx"

	"github.com/terrane-net/terrane/internal/netx"
)

// Layout gives each of a parent's child groups its home prefix: pinned groups
// keep theirs; the rest share the parent by weight, each getting the largest
// power-of-two fraction not above its share, packed largest first. With equal
// weights this is Romana's split: k groups take consecutive 1/2^ceil(log2 k)
// slices, and the slices past k are padding that belongs to no group.
func Layout(parent netip.Prefix, blockBits int, groups []*Group, pinned func(*Group) netip.Prefix) (map[*Group]netip.Prefix, []FieldError) {
	homes := make(map[*Group]netip.Prefix, len(groups))
	var errs errorList
	var used []netip.Prefix
	var free []int
	total := 0
	for i, g := range groups {
		p := pinned(g)
		if !p.IsValid() {
			free = append(free, i)
			total += g.Weight
			continue
		}
		key := g.SrcPath + pinnedKey(g.SrcPath)
		switch {
		case !netx.Covers(parent, p):
			errs.add(key, "%s is outside the parent's prefix %s", p, parent)
			continue
		case p.Bits() > blockBits:
			errs.add(key, "prefix /%d is smaller than block size /%d", p.Bits(), blockBits)
			continue
		}
		clash := false
		for _, g2 := range groups[:i] {
			if q, ok := homes[g2]; ok && q.Overlaps(p) {
				errs.add(key, "%s overlaps %s, the prefix of sibling group %q", p, q, g2.Name)
				clash = true
			}
		}
		if clash {
			continue
		}
		homes[g] = p
		used = append(used, p)
	}
	type want struct {
		g    *Group
		bits int
	}
	wants := make([]want, 0, len(free))
	for _, i := range free {
		g := groups[i]
		n := 0
		for g.Weight<<n < total {
			n++
		}
		wants = append(wants, want{g, parent.Bits() + n})
	}
	sort.SliceStable(wants, func(i, j int) bool { return wants[i].bits < wants[j].bits })
	for _, w := range wants {
		if w.bits > blockBits {
			errs.add(w.g.SrcPath, "prefix /%d is smaller than block size /%d; give the group more weight or use a larger network or a longer block size", w.bits, blockBits)
			continue
		}
		var got netip.Prefix
		for bits := w.bits; bits <= blockBits && !got.IsValid(); bits++ {
			got = firstFree(parent, bits, used)
		}
		if !got.IsValid() {
			errs.add(w.g.SrcPath, "no room left in %s for a prefix of at least one block (/%d) beside its pinned siblings", parent, blockBits)
			continue
		}
		homes[w.g] = got
		used = append(used, got)
	}
	return homes, errs
}

// pinnedKey names the pinned-prefix field as the file spells it: Romana
// files (whose top-level list is "map") call it cidr.
func pinnedKey(srcPath string) string {
	if strings.Contains(srcPath, ".map[") {
		return ".cidr"
	}
	return ".prefix"
}

// firstFree is the lowest prefix of length bits inside parent overlapping
// none of used, or the zero prefix.
func firstFree(parent netip.Prefix, bits int, used []netip.Prefix) netip.Prefix {
	shift := parent.Addr().BitLen() - bits
	var i uint64
	for {
		cand, ok := netx.Nth(parent, bits, i)
		if !ok {
			return netip.Prefix{}
		}
		var hit netip.Prefix
		for _, u := range used {
			if u.Overlaps(cand) {
				hit = u
				break
			}
		}
		if !hit.IsValid() {
			return cand
		}
		if hit.Bits() >= bits { // hit lies inside cand
			i++
			continue
		}
		next := netipx.PrefixLastIP(hit).Next()
		if !next.IsValid() || !parent.Contains(next) {
			return netip.Prefix{}
		}
		i = netx.Offset(parent.Addr(), next, shift)
	}
}

