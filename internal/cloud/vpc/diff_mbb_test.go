package vpc

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestDiffMakeBeforeBreak: between any two route sets (overlapping
// prefixes, each with its target), every call Diff makes leaves each
// address that both sets route on a target of one of the two sets — its
// old route or its new one, never a new aggregate ahead of its exception —
// and the calls end at the new set. 2,000 random pairs in a /24.
func TestDiffMakeBeforeBreak(t *testing.T) {
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
		fp := FamilyPlan{Family: 4, Budget: 100, Fits: true}
		for p, inst := range next {
			fp.Routes = append(fp.Routes, DesiredRoute{Dst: p, Instance: inst})
		}
		ops := Diff(TablePlan{Families: []FamilyPlan{fp}, Networks: []netip.Prefix{net}}, actual)
		table := map[netip.Prefix]string{}
		for p, inst := range old {
			table[p] = inst
		}
		for step, op := range ops {
			switch op.Kind {
			case OpDelete:
				delete(table, op.Dst)
			default:
				table[op.Dst] = op.Instance
			}
			for a := net.Addr(); net.Contains(a); a = a.Next() {
				was, will := lpm(old, a), lpm(next, a)
				if was == "" || will == "" {
					continue
				}
				if now := lpm(table, a); now != was && now != will {
					t.Fatalf("pair %d, after call %d (%s) of %v: %s goes to %q; it went to %q and will go to %q\nold %v\nnew %v",
						i, step+1, op, ops, a, now, was, will, old, next)
				}
			}
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
}
