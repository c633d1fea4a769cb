package routing

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/terrane-net/terrane/internal/netx"
)

// The oracle works in a tiny space of 256 addresses (an IPv4 /24 or an IPv6
// /120), where every address can be enumerated: it shares no code with netx
// or netipx.

var tinySpaces = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/24"),
	netip.MustParsePrefix("fd00:0:0:7::/120"),
}

// addrSet holds addresses of a tiny space by their last byte.
type addrSet [256]bool

func spaceAddr(space netip.Prefix, i int) netip.Addr {
	b := space.Addr().AsSlice()
	b[len(b)-1] = byte(i)
	a, _ := netip.AddrFromSlice(b)
	return a
}

func spaceIndex(space netip.Prefix, a netip.Addr) (int, bool) {
	if !space.Contains(a) {
		return 0, false
	}
	b := a.AsSlice()
	return int(b[len(b)-1]), true
}

// setOf enumerates the addresses of ps, failing the test if one lies outside
// space.
func setOf(t testing.TB, space netip.Prefix, ps ...netip.Prefix) addrSet {
	t.Helper()
	var s addrSet
	for _, p := range ps {
		first, ok := spaceIndex(space, p.Addr())
		hostBits := p.Addr().BitLen() - p.Bits()
		if !ok || hostBits > 8 || first&(1<<hostBits-1) != 0 {
			t.Fatalf("%s is not an aligned prefix inside %s", p, space)
		}
		for i := first; i < first+1<<hostBits; i++ {
			s[i] = true
		}
	}
	return s
}

// oracleCover is the minimal prefix cover of s, greedily: from the lowest
// address not yet covered, the largest aligned prefix that lies in s.
func oracleCover(space netip.Prefix, s addrSet) []netip.Prefix {
	var out []netip.Prefix
	for i := 0; i < len(s); {
		if !s[i] {
			i++
			continue
		}
		size := 1
		for next := 2; i%next == 0 && i+next <= len(s) && allSet(s[i:i+next]); next *= 2 {
			size = next
		}
		out = append(out, netip.PrefixFrom(spaceAddr(space, i), space.Addr().BitLen()-bits.TrailingZeros(uint(size))))
		i += size
	}
	return out
}

func allSet(s []bool) bool { return !slices.Contains(s, false) }

// forSeeds runs check on n fixed seeds in each tiny space; a failure names
// the seed and space so `go test -run 'Name/seed=17/'` replays it.
func forSeeds(t *testing.T, n int, check func(t *testing.T, r *rand.Rand, space netip.Prefix)) {
	for seed := range uint64(n) {
		for _, space := range tinySpaces {
			t.Run(fmt.Sprintf("seed=%d/%s", seed, space), func(t *testing.T) {
				check(t, rand.New(rand.NewPCG(seed, 0x7e77a1e)), space)
			})
		}
	}
}

func TestOracleCover(t *testing.T) {
	space := tinySpaces[0]
	set := func(idx ...int) addrSet {
		var s addrSet
		for _, i := range idx {
			s[i] = true
		}
		return s
	}
	all := addrSet{}
	for i := range all {
		all[i] = true
	}
	tests := []struct {
		name string
		set  addrSet
		want string
	}{
		{"empty", addrSet{}, "[]"},
		{"everything", all, "[10.0.0.0/24]"},
		{"one", set(1), "[10.0.0.1/32]"},
		{"aligned pair", set(2, 3), "[10.0.0.2/31]"},
		{"unaligned pair", set(1, 2), "[10.0.0.1/32 10.0.0.2/32]"},
		{"three", set(0, 1, 2), "[10.0.0.0/31 10.0.0.2/32]"},
		{"top end", set(252, 253, 254, 255), "[10.0.0.252/30]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fmt.Sprint(oracleCover(space, tt.set)); got != tt.want {
				t.Errorf("oracleCover = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestCoverMatchesOracle checks netx.Cover, which every route set here is
// built from, on random address sets and random overlapping prefixes.
func TestCoverMatchesOracle(t *testing.T) {
	forSeeds(t, 500, func(t *testing.T, r *rand.Rand, space netip.Prefix) {
		// A random address set, given as host routes.
		var s addrSet
		var hosts []netip.Prefix
		density := r.IntN(256)
		for i := range s {
			if r.IntN(256) < density {
				s[i] = true
				hosts = append(hosts, hostPrefix(spaceAddr(space, i)))
			}
		}
		r.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
		if got, want := netx.Cover(hosts...), oracleCover(space, s); !slices.Equal(got, want) {
			t.Fatalf("Cover(%d addresses) = %v, want %v", len(hosts), got, want)
		}

		// Random prefixes, overlapping and unmasked.
		ps := make([]netip.Prefix, r.IntN(8))
		for i := range ps {
			hostBits := r.IntN(9)
			first := r.IntN(256) &^ (1<<hostBits - 1)
			ps[i] = netip.PrefixFrom(spaceAddr(space, first+r.IntN(1<<hostBits)), space.Addr().BitLen()-hostBits)
		}
		masked := make([]netip.Prefix, len(ps))
		for i, p := range ps {
			masked[i] = p.Masked()
		}
		if got, want := netx.Cover(ps...), oracleCover(space, setOf(t, space, masked...)); !slices.Equal(got, want) {
			t.Fatalf("Cover(%v) = %v, want %v", ps, got, want)
		}
	})
}
