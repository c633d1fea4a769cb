package vpc

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestDiffMakeBeforeBreak: between any two route sets (overlapping
// prefixes, each with its target), 2,000 random pairs in a /24.
//
//   - With room for both sets, every call Diff makes leaves each address
//     that both sets route on a target of one of the two sets — its old
//     route or its new one, never a new aggregate ahead of its exception.
//   - With one route free beyond the larger set (what routing.VPCTable
//     keeps), the table never passes its budget and most changes still
//     break nothing; a reshuffle that needs more room than that makes one
//     delete early (its destination unrouted for one call). The share of
//     such pairs is held down here, not to zero: some pairs need more than
//     one free route at once, whatever the order.
//
// Either way the calls end at the new set.
func TestDiffMakeBeforeBreak(t *testing.T) {
	t.Run("room", func(t *testing.T) {
		if broken := diffMakeBeforeBreak(t, func(old, next int) int { return 100 }); broken > 0 {
			t.Errorf("%d of 2000 changes broke an address's route with room for both sets", broken)
		}
	})
	t.Run("tight", func(t *testing.T) {
		broken := diffMakeBeforeBreak(t, func(old, next int) int { return max(old, next) + 1 })
		t.Logf("%d of 2000 random changes needed an early delete", broken)
		if broken > 60 {
			t.Errorf("%d of 2000 changes broke an address's route with one route free; the order needs an early delete for 28 (1.4%%) of these pairs", broken)
		}
	})
}

// diffMakeBeforeBreak simulates Diff's calls on random pairs and returns how
// many pairs had a moment where an address both sets route went elsewhere.
func diffMakeBeforeBreak(t *testing.T, budget func(old, next int) int) (broken int) {
	r := rand.New(rand.NewPCG(7, 11))
	net := netip.MustParsePrefix("10.0.0.0/24")
	instances := []string{"i-a", "i-b", "i-c"}
	randomSet := func() map[netip.Prefix]string {
		set := map[netip.Prefix]string{}
		for range 1 + r.IntN(8) {
			bits := 24 + r.IntN(7)
			p, _ := netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(256))}).Prefix(bits)
			set[p] = instances[r.IntN(len(instances))]
		}
		return set
	}
	lpm := func(set map[netip.Prefix]string, a netip.Addr) string {
		best, target := -1, ""
		for p, tgt := range set {
			if p.Contains(a) && p.Bits() > best {
				best, target = p.Bits(), tgt
			}
		}
		return target
	}
	for i := range 2000 {
		old, next := randomSet(), randomSet()
		var actual []CloudRoute
		for p, inst := range old {
			actual = append(actual, CloudRoute{Dst: p, Instance: inst, Origin: OriginCreateRoute})
		}
		fp := FamilyPlan{Family: 4, Budget: budget(len(old), len(next)), Fits: true}
		for p, inst := range next {
			fp.Routes = append(fp.Routes, DesiredRoute{Dst: p, Instance: inst})
		}
		ops := Diff(TablePlan{Families: []FamilyPlan{fp}, Networks: []netip.Prefix{net}}, actual)
		table := map[netip.Prefix]string{}
		for p, inst := range old {
			table[p] = inst
		}
		brokeHere := false
		for step, op := range ops {
			if op.Kind == OpCreate && len(table) >= max(fp.Budget, len(old)) {
				t.Fatalf("pair %d, call %d (%s): the table holds %d routes, its budget %d", i, step+1, op, len(table), fp.Budget)
			}
			switch op.Kind {
			case OpDelete:
				delete(table, op.Dst)
			default:
				table[op.Dst] = op.Instance
			}
			for a := net.Addr(); net.Contains(a) && !brokeHere; a = a.Next() {
				was, will := lpm(old, a), lpm(next, a)
				if was == "" || will == "" {
					continue
				}
				if now := lpm(table, a); now != was && now != will {
					brokeHere = true
					if broken == 0 {
						t.Logf("the first: pair %d, after call %d (%s) of %v: %s goes to %q; it went to %q and will go to %q\nold %v\nnew %v",
							i, step+1, op, ops, a, now, was, will, old, next)
					}
				}
			}
		}
		if brokeHere {
			broken++
		}
		if len(table) != len(next) {
			t.Fatalf("pair %d: the calls end at %v, want %v", i, table, next)
		}
		for p, inst := range next {
			if table[p] != inst {
				t.Fatalf("pair %d: the calls end at %v, want %v", i, table, next)
			}
		}
	}
	return broken
}
