package netx

import (
	"math"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"testing"

	"go4.org/netipx"
)

var pfx = netip.MustParsePrefix

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		p    string
		want uint64
	}{
		{"10.0.0.0/8", 1 << 24}, {"10.0.0.1/32", 1}, {"0.0.0.0/0", 1 << 32},
		{"fd00::/120", 256}, {"fd00::/65", 1 << 63}, {"fd00::/64", math.MaxUint64}, {"::/0", math.MaxUint64}, {"fd00::1/128", 1},
	} {
		if got := Size(pfx(tc.p)); got != tc.want {
			t.Errorf("Size(%s) = %d, want %d", tc.p, got, tc.want)
		}
	}
	if AddSat(math.MaxUint64-1, 5) != math.MaxUint64 || AddSat(2, 3) != 5 {
		t.Error("AddSat does not saturate")
	}
}

func TestBuddyParentHalves(t *testing.T) {
	for _, tc := range []struct{ p, buddy, parent, lo, hi string }{
		{"10.0.0.0/25", "10.0.0.128/25", "10.0.0.0/24", "10.0.0.0/26", "10.0.0.64/26"},
		{"10.0.0.128/25", "10.0.0.0/25", "10.0.0.0/24", "10.0.0.128/26", "10.0.0.192/26"},
		{"128.0.0.0/1", "0.0.0.0/1", "0.0.0.0/0", "128.0.0.0/2", "192.0.0.0/2"},
		{"fd00::/65", "fd00:0:0:0:8000::/65", "fd00::/64", "fd00::/66", "fd00::4000:0:0:0/66"},
		{"fd00::1/128", "fd00::/128", "fd00::/127", "", ""},
	} {
		b, ok := Buddy(pfx(tc.p))
		if !ok || b != pfx(tc.buddy) {
			t.Errorf("Buddy(%s) = %s %v, want %s", tc.p, b, ok, tc.buddy)
		}
		if got := Parent(pfx(tc.p)); got != pfx(tc.parent) {
			t.Errorf("Parent(%s) = %s, want %s", tc.p, got, tc.parent)
		}
		if tc.lo != "" {
			lo, hi := Halves(pfx(tc.p))
			if lo != pfx(tc.lo) || hi != pfx(tc.hi) {
				t.Errorf("Halves(%s) = %s %s, want %s %s", tc.p, lo, hi, tc.lo, tc.hi)
			}
		}
	}
	if _, ok := Buddy(pfx("0.0.0.0/0")); ok {
		t.Error("/0 has no buddy")
	}
}

// toBig is an independent 128-bit reference for AddOffset, Offset and Nth.
func toBig(a netip.Addr) *big.Int { return new(big.Int).SetBytes(a.AsSlice()) }

func TestOffsetArithmeticAgainstBigInt(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5000; i++ {
		var base netip.Addr
		if i%2 == 0 {
			base = netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), 0, 0})
		} else {
			var b [16]byte
			for j := range b {
				b[j] = byte(r.Uint32())
			}
			base = netip.AddrFrom16(b)
		}
		bits := base.BitLen()
		shift := r.IntN(bits/2 + 1)
		room := bits - shift
		off := r.Uint64() >> (64 - min(room, 62)) // fits without overflow of the family
		if room < 62 {
			off = r.Uint64N(1 << (room / 2))
		}
		got := AddOffset(base, off, shift)
		want := new(big.Int).Add(toBig(base), new(big.Int).Lsh(new(big.Int).SetUint64(off), uint(shift)))
		mod := new(big.Int).Lsh(big.NewInt(1), uint(bits))
		want.Mod(want, mod)
		if toBig(got).Cmp(want) != 0 {
			t.Fatalf("AddOffset(%s, %d, %d) = %s, want %x", base, off, shift, got, want)
		}
		if want.Cmp(toBig(base)) >= 0 { // no wrap: Offset inverts AddOffset
			if back := Offset(base, got, shift); back != off {
				t.Fatalf("Offset(%s, %s, %d) = %d, want %d", base, got, shift, back, off)
			}
		}
	}
}

func TestNth(t *testing.T) {
	p := pfx("10.0.0.0/24")
	if q, ok := Nth(p, 26, 3); !ok || q != pfx("10.0.0.192/26") {
		t.Errorf("Nth(/24, 26, 3) = %s %v", q, ok)
	}
	if _, ok := Nth(p, 26, 4); ok {
		t.Error("Nth past the end accepted")
	}
	if _, ok := Nth(p, 23, 0); ok {
		t.Error("Nth shorter than the prefix accepted")
	}
	if q, ok := Nth(pfx("fd00::/64"), 128, math.MaxUint64); !ok || q != pfx("fd00::ffff:ffff:ffff:ffff/128") {
		t.Errorf("Nth(fd00::/64, 128, max) = %s %v", q, ok)
	}
}

// TestCoverIsMinimal checks Cover against a brute-force minimal cover on
// random sets of small prefixes inside a /24.
func TestCoverIsMinimal(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 500; i++ {
		var in []netip.Prefix
		var set [256]bool
		for j := r.IntN(12); j >= 0; j-- {
			bits := 24 + r.IntN(9)
			p, _ := Nth(pfx("10.0.0.0/24"), bits, uint64(r.IntN(1<<(bits-24))))
			in = append(in, p)
			lo := int(p.Addr().As4()[3])
			for k := 0; k < int(Size(p)); k++ {
				set[lo+k] = true
			}
		}
		// Greedy: from each uncovered address, the largest aligned block
		// that stays inside the set. That is the minimal cover.
		want := 0
		for a := 0; a < 256; {
			if !set[a] {
				a++
				continue
			}
			size := 1
			for a%(size*2) == 0 && a+size*2 <= 256 && all(set[a:a+size*2]) {
				size *= 2
			}
			want++
			a += size
		}
		got := Cover(in...)
		if len(got) != want {
			t.Fatalf("Cover(%v) = %v (%d prefixes), want %d", in, got, len(got), want)
		}
		var b netipx.IPSetBuilder
		for _, p := range got {
			b.AddPrefix(p)
		}
		s, _ := b.IPSet()
		for a := 0; a < 256; a++ {
			if s.Contains(netip.AddrFrom4([4]byte{10, 0, 0, byte(a)})) != set[a] {
				t.Fatalf("Cover(%v) = %v differs at 10.0.0.%d", in, got, a)
			}
		}
	}
}

func all(b []bool) bool {
	for _, x := range b {
		if !x {
			return false
		}
	}
	return true
}

func TestSubtractCoveredBy(t *testing.T) {
	got := Subtract([]netip.Prefix{pfx("10.0.0.0/24")}, pfx("10.0.0.64/26"))
	if len(got) != 2 || got[0] != pfx("10.0.0.0/26") || got[1] != pfx("10.0.0.128/25") {
		t.Errorf("Subtract = %v", got)
	}
	if !CoveredBy(pfx("10.0.0.128/26"), got) || CoveredBy(pfx("10.0.0.64/27"), got) {
		t.Error("CoveredBy wrong")
	}
	if !Covers(pfx("10.0.0.0/24"), pfx("10.0.0.0/24")) || Covers(pfx("10.0.0.0/25"), pfx("10.0.0.0/24")) {
		t.Error("Covers wrong")
	}
}

func TestJoin(t *testing.T) {
	ps := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/28"), netip.MustParsePrefix("fd00::/64")}
	if got := Join(ps, ", ", "none"); got != "10.0.0.0/28, fd00::/64" {
		t.Errorf("Join = %q", got)
	}
	if got := Join(nil, ", ", "none"); got != "none" {
		t.Errorf("Join(nil) = %q, want the empty word", got)
	}
}
