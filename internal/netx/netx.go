// Package netx holds prefix arithmetic on net/netip values: address counts,
// splitting, buddies, minimal covers, and the smallest route set of a
// longest-prefix-match table (MinimalRoutes, ORTC). It is pure; every other
// package of Terrane's core builds on it.
package netx

import (
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"strings"

	"go4.org/netipx"
)

// Bits is the address width of p's family: 32 or 128.
func Bits(p netip.Prefix) int { return p.Addr().BitLen() }

// HostBits is the number of address bits p leaves free.
func HostBits(p netip.Prefix) int { return Bits(p) - p.Bits() }

// Size is the number of addresses in p, saturated at math.MaxUint64.
func Size(p netip.Prefix) uint64 {
	hb := HostBits(p)
	if hb >= 64 {
		return math.MaxUint64
	}
	return 1 << hb
}

// SizeOfBits is the number of addresses in a prefix of length plen in a family
// of width bits, saturated at math.MaxUint64.
func SizeOfBits(bits, plen int) uint64 {
	hb := bits - plen
	if hb >= 64 {
		return math.MaxUint64
	}
	return 1 << hb
}

// AddSat adds without overflowing: the sum saturates at math.MaxUint64.
func AddSat(a, b uint64) uint64 {
	s, c := bits.Add64(a, b, 0)
	if c != 0 {
		return math.MaxUint64
	}
	return s
}

// Covers reports whether outer contains every address of inner.
func Covers(outer, inner netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

// Buddy is the other half of p's parent prefix. The zero-length prefix has no
// buddy and is returned unchanged with ok false.
func Buddy(p netip.Prefix) (netip.Prefix, bool) {
	if p.Bits() == 0 {
		return p, false
	}
	parent := Parent(p)
	lo, hi := Halves(parent)
	if lo == p {
		return hi, true
	}
	return lo, true
}

// Parent is the prefix one bit shorter than p that contains it.
func Parent(p netip.Prefix) netip.Prefix {
	pp, _ := p.Addr().Prefix(p.Bits() - 1)
	return pp
}

// Halves splits p into its two children. p must be longer than a host route.
func Halves(p netip.Prefix) (lo, hi netip.Prefix) {
	lo = netip.PrefixFrom(p.Addr(), p.Bits()+1)
	r := netipx.PrefixLastIP(p)
	hi, _ = r.Prefix(p.Bits() + 1)
	return lo, hi
}

// Nth is the i-th sub-prefix of length plen inside p (i counted from 0).
// ok is false when i is out of range.
func Nth(p netip.Prefix, plen int, i uint64) (netip.Prefix, bool) {
	if plen < p.Bits() || plen > Bits(p) {
		return netip.Prefix{}, false
	}
	n := plen - p.Bits()
	if n < 64 && i >= 1<<n {
		return netip.Prefix{}, false
	}
	a := AddOffset(p.Addr(), i, Bits(p)-plen)
	return netip.PrefixFrom(a, plen), true
}

// AddOffset returns a + i<<shift, computed in 128-bit arithmetic.
func AddOffset(a netip.Addr, i uint64, shift int) netip.Addr {
	hi, lo := addrToU128(a)
	ohi, olo := shl128(0, i, shift)
	lo, c := bits.Add64(lo, olo, 0)
	hi, _ = bits.Add64(hi, ohi, c)
	return u128ToAddr(hi, lo, a.Is4())
}

// Offset is the distance, in units of 1<<shift addresses, from base to a.
// a must not be below base and the result must fit 64 bits.
func Offset(base, a netip.Addr, shift int) uint64 {
	bhi, blo := addrToU128(base)
	ahi, alo := addrToU128(a)
	lo, b := bits.Sub64(alo, blo, 0)
	hi, _ := bits.Sub64(ahi, bhi, b)
	hi, lo = shr128(hi, lo, shift)
	_ = hi
	return lo
}

func addrToU128(a netip.Addr) (hi, lo uint64) {
	if a.Is4() {
		b := a.As4()
		return 0, uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
	}
	b := a.As16()
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[i+8])
	}
	return hi, lo
}

func u128ToAddr(hi, lo uint64, is4 bool) netip.Addr {
	if is4 {
		return netip.AddrFrom4([4]byte{byte(lo >> 24), byte(lo >> 16), byte(lo >> 8), byte(lo)})
	}
	var b [16]byte
	for i := 7; i >= 0; i-- {
		b[i] = byte(hi)
		hi >>= 8
		b[i+8] = byte(lo)
		lo >>= 8
	}
	return netip.AddrFrom16(b)
}

func shl128(hi, lo uint64, n int) (uint64, uint64) {
	switch {
	case n == 0:
		return hi, lo
	case n >= 128:
		return 0, 0
	case n >= 64:
		return lo << (n - 64), 0
	default:
		return hi<<n | lo>>(64-n), lo << n
	}
}

func shr128(hi, lo uint64, n int) (uint64, uint64) {
	switch {
	case n == 0:
		return hi, lo
	case n >= 128:
		return 0, 0
	case n >= 64:
		return 0, hi >> (n - 64)
	default:
		return hi >> n, lo>>n | hi<<(64-n)
	}
}

// Cover is the minimal set of prefixes whose union is exactly the union of ps,
// sorted by address.
func Cover(ps ...netip.Prefix) []netip.Prefix {
	if len(ps) == 0 {
		return nil
	}
	var b netipx.IPSetBuilder
	for _, p := range ps {
		b.AddPrefix(p.Masked())
	}
	s, _ := b.IPSet()
	return s.Prefixes()
}

// Subtract is the minimal set of prefixes covering the addresses of from that
// are in none of minus.
func Subtract(from []netip.Prefix, minus ...netip.Prefix) []netip.Prefix {
	var b netipx.IPSetBuilder
	for _, p := range from {
		b.AddPrefix(p)
	}
	for _, p := range minus {
		b.RemovePrefix(p)
	}
	s, _ := b.IPSet()
	return s.Prefixes()
}

// Less orders prefixes by family, then address, then length (shorter first).
func Less(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// Sort sorts ps in place with Less and returns it.
func Sort(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, Less)
	return ps
}

// TotalSize is the number of addresses in the union of ps (which must be
// disjoint), saturated at math.MaxUint64.
func TotalSize(ps []netip.Prefix) uint64 {
	var n uint64
	for _, p := range ps {
		n = AddSat(n, Size(p))
	}
	return n
}

// AnyOverlap reports whether p overlaps any of ps.
func AnyOverlap(p netip.Prefix, ps []netip.Prefix) bool {
	for _, q := range ps {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}

// CoveredBy reports whether p lies entirely inside one of ps.
func CoveredBy(p netip.Prefix, ps []netip.Prefix) bool {
	for _, q := range ps {
		if Covers(q, p) {
			return true
		}
	}
	return false
}

// Join writes prefixes as text separated by sep, or empty when there are
// none: the one way every message and table lists prefixes.
func Join(ps []netip.Prefix, sep, empty string) string {
	if len(ps) == 0 {
		return empty
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, sep)
}
