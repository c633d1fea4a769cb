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
// slices, and the slices past k are padding that belongs to no group. When
// pinned siblings leave too little room, every unpinned share is halved, as
// often as needed, before a group is refused.
func Layout(parent netip.Prefix, blockBits int, groups []*Group, pinned func(*Group) netip.Prefix) (map[*Group]netip.Prefix, []FieldError) {
	homes := make(map[*Group]netip.Prefix, len(groups))
	var errs errorList
	var used []netip.Prefix
	var free []int
	var pinnedBefore []*Group
	var pins prefixIndex // of pinnedBefore's prefixes
	var total uint64     // saturating: weights come from the file
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
		if j, clash := pins.firstOverlap(p); clash {
			g2 := pinnedBefore[j]
			errs.add(key, "%s overlaps %s, the prefix of sibling group %q", p, homes[g2], g2.Name)
			continue
		}
		homes[g] = p
		used = append(used, p)
		pins.add(p, len(pinnedBefore))
		pinnedBefore = append(pinnedBefore, g)
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
		free := newFreeSpace(parent, used)
		var failed []*Group
		for _, w := range fits {
			var p netip.Prefix
			for bits := min(w.bits+extra, blockBits); bits <= blockBits && !p.IsValid(); bits++ {
				p = free.take(bits)
			}
			if !p.IsValid() {
				failed = append(failed, w.g)
				continue
			}
			got[w.g] = p
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

// freeSpace is what is left of a parent prefix: sorted, disjoint ranges.
// take finds the lowest free prefix without rescanning every placed sibling,
// so a level of k groups lays out in about O(k), not O(k^3).
type freeSpace struct {
	ranges []netipx.IPRange
	// skip[b] counts the leading ranges known to hold no free /b, so that
	// many small gaps left by pinned siblings are scanned once, not once
	// per group.
	skip [129]int
}

func newFreeSpace(parent netip.Prefix, used []netip.Prefix) *freeSpace {
	var b netipx.IPSetBuilder
	b.AddPrefix(parent)
	for _, u := range used {
		b.RemovePrefix(u)
	}
	s, _ := b.IPSet()
	return &freeSpace{ranges: s.Ranges()}
}

// take removes and returns the lowest free prefix of length bits, or the
// zero prefix when none is free.
func (s *freeSpace) take(bits int) netip.Prefix {
	if bits < 0 || bits >= len(s.skip) {
		return netip.Prefix{}
	}
	for i := s.skip[bits]; i < len(s.ranges); i++ {
		r := s.ranges[i]
		if bits > r.From().BitLen() {
			return netip.Prefix{}
		}
		p := netip.PrefixFrom(r.From(), bits).Masked()
		if p.Addr().Less(r.From()) { // r starts mid-prefix: try the next one
			next := netipx.PrefixLastIP(p).Next()
			if !next.IsValid() {
				continue
			}
			p = netip.PrefixFrom(next, bits)
		}
		last := netipx.PrefixLastIP(p)
		if r.To().Less(last) {
			continue
		}
		var rest []netipx.IPRange
		if p.Addr() != r.From() {
			rest = append(rest, netipx.IPRangeFrom(r.From(), p.Addr().Prev()))
		}
		if last != r.To() {
			rest = append(rest, netipx.IPRangeFrom(last.Next(), r.To()))
		}
		s.ranges = slices.Replace(s.ranges, i, i+1, rest...)
		for b := range s.skip {
			if s.skip[b] > i {
				s.skip[b] += len(rest) - 1
			}
			if b <= bits { // a range without a free /bits has no larger one either
				s.skip[b] = max(s.skip[b], i)
			}
		}
		return p
	}
	for b := 0; b <= bits; b++ {
		s.skip[b] = len(s.ranges)
	}
	return netip.Prefix{}
}
