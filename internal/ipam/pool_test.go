package ipam

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/terrane-net/terrane/internal/netx"
)

// TestPoolRandomOps checks the pool against a plain model under random
// claims, allocations, releases and ownership changes: no address is given
// twice, every address lies in an open owned block, free counts agree, and
// surplus never gives back a used block nor the last spare.
func TestPoolRandomOps(t *testing.T) {
	blocks := []netip.Prefix{}
	for i := range 6 {
		blocks = append(blocks, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i * 8)}), 29))
	}
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 1))
		p := NewPool()
		owned := map[netip.Prefix]bool{}
		used := map[netip.Addr]netip.Prefix{}
		for range 300 {
			switch r.IntN(6) {
			case 0:
				b := blocks[r.IntN(len(blocks))]
				p.Open(b)
				owned[b] = true
			case 1, 2:
				a, b, ok := p.Allocate()
				if !ok {
					var room bool
					for ob := range owned {
						n := 0
						for _, ub := range used {
							if ub == ob {
								n++
							}
						}
						room = room || uint64(n) < netx.Size(ob)
					}
					if room {
						t.Fatalf("seed %d: allocate failed with room in %v", seed, owned)
					}
					continue
				}
				if _, dup := used[a]; dup || !b.Contains(a) || !owned[b] {
					t.Fatalf("seed %d: allocate gave %s in %s (dup %v, owned %v)", seed, a, b, dup, owned[b])
				}
				used[a] = b
			case 3:
				for a, b := range used {
					p.Unmark(a, b)
					delete(used, a)
					break
				}
			case 4:
				var keep []netip.Prefix
				for b := range owned {
					if r.IntN(3) > 0 {
						keep = append(keep, b)
					}
				}
				p.SetOwned(keep)
				owned = map[netip.Prefix]bool{}
				for _, b := range keep {
					owned[b] = true
				}
			case 5:
				for _, b := range p.Surplus(uint64(r.IntN(10))) {
					for _, ub := range used {
						if ub == b {
							t.Fatalf("seed %d: surplus offered used block %s", seed, b)
						}
					}
					p.Remove(b)
					delete(owned, b)
				}
			}
			var free uint64
			for b := range owned {
				free += netx.Size(b)
			}
			for _, b := range used {
				if owned[b] {
					free--
				}
			}
			if got := p.Free(); got != free {
				t.Fatalf("seed %d: free %d, model %d", seed, got, free)
			}
		}
	}
}

// TestPoolSurplusKeepsASpare: with every block empty, one stays.
func TestPoolSurplusKeepsASpare(t *testing.T) {
	p := NewPool()
	for _, s := range []string{"10.0.0.0/29", "10.0.0.8/29", "10.0.0.16/29"} {
		p.Open(netip.MustParsePrefix(s))
	}
	got := p.Surplus(0)
	if len(got) != 2 || got[0] != netip.MustParsePrefix("10.0.0.16/29") || got[1] != netip.MustParsePrefix("10.0.0.8/29") {
		t.Fatalf("surplus %v, want the two highest blocks, the lowest kept", got)
	}
	if got := p.Surplus(20); len(got) != 0 {
		t.Fatalf("surplus keeping 20 of 24 free: %v, want none", got)
	}
}
