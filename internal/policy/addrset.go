package policy

import (
	"net/netip"
	"slices"

	"go4.org/netipx"
)

// Address sets inside the compiler are []netipx.IPRange in normal form:
// sorted, disjoint, non-adjacent ranges, IPv4 before IPv6 — the form a
// Direction prints. The operations below keep it with one linear merge
// each, where a netipx.IPSetBuilder sorts its whole content on every
// IPSet call.

// universeRanges is every address of both families.
var universeRanges = []netipx.IPRange{
	netipx.IPRangeFrom(netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255})),
	netipx.IPRangeFrom(netip.IPv6Unspecified(), netip.AddrFrom16([16]byte{255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255})),
}

// adjacentOrOverlapping: may b (which starts at or after a) join a?
func joins(a, b netipx.IPRange) bool {
	return b.From().Compare(a.To()) <= 0 || a.To().Next() == b.From()
}

// coalesce puts ranges sorted by their first address into normal form, in
// place.
func coalesce(rs []netipx.IPRange) []netipx.IPRange {
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && joins(out[n-1], r) {
			if r.To().Compare(out[n-1].To()) > 0 {
				out[n-1] = netipx.IPRangeFrom(out[n-1].From(), r.To())
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

func byFrom(a, b netipx.IPRange) int { return a.From().Compare(b.From()) }

// rangesOfAddrs is the set of the addresses.
func rangesOfAddrs(addrs []netip.Addr) []netipx.IPRange {
	if len(addrs) == 0 {
		return nil
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	out := make([]netipx.IPRange, 0, len(addrs))
	for _, a := range addrs {
		if n := len(out); n > 0 && (out[n-1].To() == a || out[n-1].To().Next() == a) {
			out[n-1] = netipx.IPRangeFrom(out[n-1].From(), a)
			continue
		}
		out = append(out, netipx.IPRangeFrom(a, a))
	}
	return out
}

// rangesOfPrefixes is the set of the prefixes' addresses.
func rangesOfPrefixes(ps []netip.Prefix) []netipx.IPRange {
	out := make([]netipx.IPRange, 0, len(ps))
	for _, p := range ps {
		out = append(out, netipx.RangeOfPrefix(p.Masked()))
	}
	slices.SortFunc(out, byFrom)
	return coalesce(out)
}

// unionRanges is the union of normal-form sets.
func unionRanges(sets ...[]netipx.IPRange) []netipx.IPRange {
	var nonEmpty [][]netipx.IPRange
	n := 0
	for _, s := range sets {
		if len(s) > 0 {
			nonEmpty = append(nonEmpty, s)
			n += len(s)
		}
	}
	switch len(nonEmpty) {
	case 0:
		return nil
	case 1:
		return nonEmpty[0]
	case 2:
		return union2(nonEmpty[0], nonEmpty[1])
	}
	if len(nonEmpty) <= 8 {
		out := nonEmpty[0]
		for _, s := range nonEmpty[1:] {
			out = union2(out, s)
		}
		return out
	}
	all := make([]netipx.IPRange, 0, n)
	for _, s := range nonEmpty {
		all = append(all, s...)
	}
	slices.SortFunc(all, byFrom)
	return coalesce(all)
}

// union2 is a ∪ b, by one merge.
func union2(a, b []netipx.IPRange) []netipx.IPRange {
	out := make([]netipx.IPRange, 0, len(a)+len(b))
	for len(a) > 0 || len(b) > 0 {
		var r netipx.IPRange
		if len(b) == 0 || len(a) > 0 && byFrom(a[0], b[0]) <= 0 {
			r, a = a[0], a[1:]
		} else {
			r, b = b[0], b[1:]
		}
		if k := len(out); k > 0 && joins(out[k-1], r) {
			if r.To().Compare(out[k-1].To()) > 0 {
				out[k-1] = netipx.IPRangeFrom(out[k-1].From(), r.To())
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// intersectRanges is a ∩ b.
func intersectRanges(a, b []netipx.IPRange) []netipx.IPRange {
	var out []netipx.IPRange
	for len(a) > 0 && len(b) > 0 {
		lo, hi := a[0].From(), a[0].To()
		if b[0].From().Compare(lo) > 0 {
			lo = b[0].From()
		}
		if b[0].To().Compare(hi) < 0 {
			hi = b[0].To()
		}
		if lo.Compare(hi) <= 0 {
			out = append(out, netipx.IPRangeFrom(lo, hi))
		}
		if a[0].To().Compare(b[0].To()) < 0 {
			a = a[1:]
		} else {
			b = b[1:]
		}
	}
	return out
}

// subtractRanges is a \ b.
func subtractRanges(a, b []netipx.IPRange) []netipx.IPRange {
	if len(b) == 0 || len(a) == 0 {
		return a
	}
	out := make([]netipx.IPRange, 0, len(a))
	for _, r := range a {
		for len(b) > 0 && b[0].To().Compare(r.From()) < 0 {
			b = b[1:]
		}
		cur, covered := r.From(), false
		k := 0
		for ; k < len(b) && b[k].From().Compare(r.To()) <= 0; k++ {
			if b[k].From().Compare(cur) > 0 {
				out = append(out, netipx.IPRangeFrom(cur, b[k].From().Prev()))
			}
			if b[k].To().Compare(r.To()) >= 0 {
				covered = true
				break
			}
			cur = b[k].To().Next()
		}
		if !covered {
			out = append(out, netipx.IPRangeFrom(cur, r.To()))
		}
		// b[k] may reach into the next range of a: keep it.
		b = b[k:]
	}
	return out
}

// containsAddr reports whether the normal-form set holds a.
func containsAddr(rs []netipx.IPRange, a netip.Addr) bool {
	i, _ := slices.BinarySearchFunc(rs, a, func(r netipx.IPRange, a netip.Addr) int {
		return r.To().Compare(a) // the first range ending at or after a
	})
	return i < len(rs) && rs[i].From().Compare(a) <= 0 && a.Compare(rs[i].To()) <= 0
}

// ipBlockRanges is an ipBlock's CIDR less its excepts (validated input).
func ipBlockRanges(b *IPBlock) []netipx.IPRange {
	r := []netipx.IPRange{netipx.RangeOfPrefix(netip.MustParsePrefix(b.CIDR))}
	if len(b.Except) == 0 {
		return r
	}
	ex := make([]netip.Prefix, 0, len(b.Except))
	for _, e := range b.Except {
		ex = append(ex, netip.MustParsePrefix(e))
	}
	return subtractRanges(r, rangesOfPrefixes(ex))
}
