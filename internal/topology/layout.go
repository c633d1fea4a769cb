package topology

import (
	"net/netip"
	"slices"
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
	var total uint64 // saturating: weights come from the file
	for i, g := range groups {
		p := pinned(g)
		if !p.IsValid() {
			free = append(free, i)
			total = netx.AddSat(total, weightOf(g))
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
		w, n := weightOf(g), 0
		for w<<n>>n == w && w<<n < total { // stop before w<<n overflows
			n++
		}
		wants = append(wants, want{g, parent.Bits() + n})
	}
	sort.SliceStable(wants, func(i, j int) bool { return wants[i].bits < wants[j].bits })
	fits := wants[:0]
	for _, w := range wants {
		if w.bits > blockBits {
			errs.add(w.g.SrcPath, "prefix /%d is smaller than block size /%d; give the group more weight or use a larger network or a longer block size", w.bits, blockBits)
			continue
		}
		fits = append(fits, w)
	}
	// Shares are of the whole parent, so pinned siblings may leave too
	// little room for the last groups; then every unpinned group gives up
	// a bit of its share and the packing starts over. Without pins the
	// first pass always fits.
	for extra := 0; ; extra++ {
		got := make(map[*Group]netip.Prefix, len(fits))
		taken := slices.Clone(used)
		var failed []*Group
		for _, w := range fits {
			var p netip.Prefix
			for bits := min(w.bits+extra, blockBits); bits <= blockBits && !p.IsValid(); bits++ {
				p = firstFree(parent, bits, taken)
			}
			if !p.IsValid() {
				failed = append(failed, w.g)
				continue
			}
			got[w.g] = p
			taken = append(taken, p)
		}
		if len(failed) > 0 && extra < blockBits-parent.Bits() {
			continue
		}
		for g, p := range got {
			homes[g] = p
		}
		for _, g := range failed {
			errs.add(g.SrcPath, "no room left in %s for a prefix of at least one block (/%d) beside its pinned siblings", parent, blockBits)
		}
		return homes, errs
	}
}

// weightOf is g's weight as Layout uses it: at least 1.
func weightOf(g *Group) uint64 { return uint64(max(g.Weight, 1)) }

// pinnedKey names the pinned-prefix field as the file spells it: Romana
// files (whose top-level list is "map") call it cidr.
func pinnedKey(srcPath string) string {
	if strings.Contains(srcPath, ".map[") {
		return ".cidr"
	}
	return ".prefix"
}

// firstFree is the lowest prefix of length bits inside parent overlapping
// none of used, or the zero prefix. It walks addresses rather than slot
// indexes: in IPv6 a slot index may not fit 64 bits.
func firstFree(parent netip.Prefix, bits int, used []netip.Prefix) netip.Prefix {
	if bits < parent.Bits() || bits > parent.Addr().BitLen() {
		return netip.Prefix{}
	}
	cand := netip.PrefixFrom(parent.Addr(), bits)
	for {
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
		// Step past the larger of the two: the candidate when hit lies
		// inside it, else hit (whose end is aligned to bits as well).
		skip := cand
		if hit.Bits() < bits {
			skip = hit
		}
		next := netipx.PrefixLastIP(skip).Next()
		if !next.IsValid() || !parent.Contains(next) {
			return netip.Prefix{}
		}
		cand = netip.PrefixFrom(next, bits)
	}
}
