package policy

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"go4.org/netipx"
)

// TestRangeOpsMatchIPSet holds the compiler's range-list operations to
// netipx.IPSet on random sets of both families, with ranges that touch,
// overlap, nest, and reach the ends of each family.
func TestRangeOpsMatchIPSet(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	addr := func() netip.Addr {
		switch r.IntN(6) {
		case 0:
			return netip.AddrFrom4([4]byte{255, 255, 255, byte(250 + r.IntN(6))})
		case 1:
			return netip.AddrFrom4([4]byte{0, 0, 0, byte(r.IntN(6))})
		case 2:
			b := [16]byte{0xfd}
			b[15] = byte(r.IntN(32))
			return netip.AddrFrom16(b)
		case 3:
			b := [16]byte{}
			for i := range b {
				b[i] = 0xff
			}
			b[15] = byte(250 + r.IntN(6))
			return netip.AddrFrom16(b)
		}
		return netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(32))})
	}
	set := func() ([]netipx.IPRange, *netipx.IPSet) {
		var b netipx.IPSetBuilder
		var addrs []netip.Addr
		var ps []netip.Prefix
		for range r.IntN(8) {
			switch r.IntN(3) {
			case 0:
				a := addr()
				addrs = append(addrs, a)
				b.Add(a)
			default:
				a := addr()
				p := netip.PrefixFrom(a, a.BitLen()-r.IntN(4)).Masked()
				ps = append(ps, p)
				b.AddPrefix(p)
			}
		}
		s, _ := b.IPSet()
		return unionRanges(rangesOfAddrs(addrs), rangesOfPrefixes(ps)), s
	}
	for i := range 20000 {
		a, as := set()
		b, bs := set()
		c, cs := set()
		if !slices.Equal(a, as.Ranges()) {
			t.Fatalf("%d: built %v, want %v", i, a, as.Ranges())
		}
		build := func(f func(*netipx.IPSetBuilder)) []netipx.IPRange {
			var x netipx.IPSetBuilder
			f(&x)
			s, _ := x.IPSet()
			return s.Ranges()
		}
		for _, tc := range []struct {
			op        string
			got, want []netipx.IPRange
		}{
			{"union", unionRanges(a, b), build(func(x *netipx.IPSetBuilder) { x.AddSet(as); x.AddSet(bs) })},
			{"union of three", unionRanges(a, b, c), build(func(x *netipx.IPSetBuilder) { x.AddSet(as); x.AddSet(bs); x.AddSet(cs) })},
			{"intersection", intersectRanges(a, b), build(func(x *netipx.IPSetBuilder) { x.AddSet(as); x.Intersect(bs) })},
			{"difference", subtractRanges(a, b), build(func(x *netipx.IPSetBuilder) { x.AddSet(as); x.RemoveSet(bs) })},
			{"complement", subtractRanges(universeRanges, a), build(func(x *netipx.IPSetBuilder) { x.AddSet(universe); x.RemoveSet(as) })},
		} {
			if len(tc.got) == 0 && len(tc.want) == 0 {
				continue
			}
			if !slices.Equal(tc.got, tc.want) {
				t.Fatalf("%d: %s of %v and %v (and %v) = %v, want %v", i, tc.op, a, b, c, tc.got, tc.want)
			}
		}
		for range 4 {
			x := addr()
			if containsAddr(a, x) != as.Contains(x) {
				t.Fatalf("%d: %v holds %s: %v, want %v", i, a, x, containsAddr(a, x), as.Contains(x))
			}
		}
	}
}

// universe is every address of both families, as an IPSet.
var universe = func() *netipx.IPSet {
	var b netipx.IPSetBuilder
	for _, p := range Everywhere {
		b.AddPrefix(p)
	}
	s, _ := b.IPSet()
	return s
}()
