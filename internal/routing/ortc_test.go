package routing

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/terrane-net/terrane/internal/netx"
)

// The optimum oracle: an exact search over every prefix of a small space
// and every target (and "no route") inherited into it. It shares nothing
// with ORTC's two-valued sets: cost(v, h) is computed for every h.

// acceptance is what each address of a tiny space accepts: ok[i][t] for
// target t, and dflt[i] when it must match no route; any[i] when anything
// goes.
type acceptance struct {
	n       int // addresses
	targets int
	any     []bool
	dflt    []bool
	ok      [][]bool
}

const inf = 1 << 30

// optimum is the fewest routes (prefixes inside the space of n addresses,
// targets 0..targets-1) under which longest match gives every address what
// it accepts; inf when no route set does.
func (ac *acceptance) optimum() int {
	// level k holds the nodes of size 2^k; cost[k][node][h+1], h = -1 for
	// "no route above".
	var cost [][][]int
	size := 1
	for k := 0; size <= ac.n; k++ {
		nodes := ac.n / size
		cost = append(cost, make([][]int, nodes))
		for v := range nodes {
			c := make([]int, ac.targets+1)
			for h := -1; h < ac.targets; h++ {
				if k == 0 {
					c[h+1] = ac.leafCost(v, h)
					continue
				}
				a, b := cost[k-1][2*v], cost[k-1][2*v+1]
				best := a[h+1] + b[h+1]
				for t := range ac.targets {
					best = min(best, 1+a[t+1]+b[t+1])
				}
				c[h+1] = min(best, inf)
			}
			cost[k][v] = c
		}
		size *= 2
	}
	return cost[len(cost)-1][0][0]
}

func (ac *acceptance) leafCost(i, h int) int {
	accepts := func(h int) bool {
		switch {
		case ac.any[i]:
			return true
		case h < 0:
			return ac.dflt[i]
		default:
			return ac.ok[i][h]
		}
	}
	if accepts(h) {
		return 0
	}
	for t := range ac.targets {
		if accepts(t) {
			return 1
		}
	}
	return inf
}

// satisfied reports the first address longest match over routes gives
// something it does not accept.
func (ac *acceptance) satisfied(space netip.Prefix, routes []netx.TargetRoute) error {
	for i := range ac.n {
		a := spaceAddr(space, i)
		best := -1
		for ri, r := range routes {
			if r.Prefix.Contains(a) && (best < 0 || r.Prefix.Bits() > routes[best].Prefix.Bits()) {
				best = ri
			}
		}
		switch {
		case ac.any[i]:
		case best < 0 && !ac.dflt[i]:
			return fmt.Errorf("%s matches no route", a)
		case best >= 0 && (ac.dflt[i] || !ac.ok[i][routes[best].Target]):
			return fmt.Errorf("%s matches %v", a, routes[best])
		}
	}
	return nil
}

// acceptanceOf evaluates rules address by address: the longest rules
// covering it, the highest rank of those, combined.
func acceptanceOf(space netip.Prefix, n, targets int, rules []netx.RouteRule) *acceptance {
	ac := &acceptance{n: n, targets: targets, any: make([]bool, n), dflt: make([]bool, n), ok: make([][]bool, n)}
	for i := range n {
		a := spaceAddr(space, i)
		bits, rank := -1, 0
		var in []netx.RouteRule
		for _, r := range rules {
			if !r.Prefix.Contains(a) {
				continue
			}
			switch {
			case r.Prefix.Bits() > bits || r.Prefix.Bits() == bits && r.Rank > rank:
				bits, rank, in = r.Prefix.Bits(), r.Rank, []netx.RouteRule{r}
			case r.Prefix.Bits() == bits && r.Rank == rank:
				in = append(in, r)
			}
		}
		ac.ok[i] = make([]bool, targets)
		ac.dflt[i] = len(in) == 0
		if len(in) == 0 {
			continue
		}
		anyOnly, acc := true, make([]int, targets) // acc[t]: rules accepting t
		for _, r := range in {
			switch r.Want {
			case netx.WantDefault:
				ac.dflt[i] = true
			case netx.WantTargets:
				anyOnly = false
				for _, t := range r.Targets {
					acc[t]++
				}
			}
		}
		if ac.dflt[i] {
			continue
		}
		if anyOnly {
			ac.any[i] = true
			continue
		}
		need := 0
		for _, r := range in {
			if r.Want == netx.WantTargets {
				need++
			}
		}
		some := false
		for t := range targets {
			ac.ok[i][t] = acc[t] == need
			some = some || ac.ok[i][t]
		}
		ac.dflt[i] = !some
	}
	return ac
}

// randomRules draws up to maxBlocks blocks with random acceptable targets,
// a few netx.WantAny regions and a few netx.WantDefault holes inside space (n
// addresses).
func randomRules(r *rand.Rand, space netip.Prefix, n, targets, maxBlocks int) []netx.RouteRule {
	hostBits := 0
	for 1<<hostBits < n {
		hostBits++
	}
	randPrefix := func(minHost, maxHost int) netip.Prefix {
		hb := minHost + r.IntN(maxHost-minHost+1)
		first := r.IntN(n) &^ (1<<hb - 1)
		return netip.PrefixFrom(spaceAddr(space, first), space.Addr().BitLen()-hb)
	}
	var rules []netx.RouteRule
	for range r.IntN(3) {
		rules = append(rules, netx.RouteRule{Prefix: randPrefix(1, hostBits), Want: netx.WantAny, Rank: r.IntN(2)})
	}
	for range 1 + r.IntN(maxBlocks) {
		var ts []int
		for range 1 + r.IntN(2) {
			ts = append(ts, r.IntN(targets))
		}
		rules = append(rules, netx.TargetsRule(randPrefix(0, max(0, hostBits-2)), 2+r.IntN(2), ts...))
	}
	for range r.IntN(2) {
		rules = append(rules, netx.RouteRule{Prefix: randPrefix(0, 1), Want: netx.WantDefault, Rank: 1 + r.IntN(3)})
	}
	return rules
}

// bruteForce is the fewest routes meeting ac over a space of at most 8
// addresses, found by trying every route set in order of size.
func bruteForce(space netip.Prefix, ac *acceptance) int {
	var cands []netip.Prefix
	for hb := 0; 1<<hb <= ac.n; hb++ {
		for first := 0; first < ac.n; first += 1 << hb {
			cands = append(cands, netip.PrefixFrom(spaceAddr(space, first), space.Addr().BitLen()-hb))
		}
	}
	var try func(start, left int, routes []netx.TargetRoute) bool
	try = func(start, left int, routes []netx.TargetRoute) bool {
		if left == 0 {
			return ac.satisfied(space, routes) == nil
		}
		for i := start; i < len(cands); i++ {
			for t := range ac.targets {
				if try(i+1, left-1, append(routes, netx.TargetRoute{Prefix: cands[i], Target: t})) {
					return true
				}
			}
		}
		return false
	}
	for k := 0; k <= len(cands); k++ {
		if try(0, k, nil) {
			return k
		}
	}
	return inf
}

// TestOptimumOracleAgainstBruteForce checks the oracle itself: on spaces of
// 8 addresses its search equals trying every route set.
func TestOptimumOracleAgainstBruteForce(t *testing.T) {
	for seed := range uint64(300) {
		space := netip.MustParsePrefix("10.0.0.0/29")
		r := rand.New(rand.NewPCG(seed, 0x0c7c))
		rules := randomRules(r, space, 8, 3, 4)
		ac := acceptanceOf(space, 8, 3, rules)
		if got, want := ac.optimum(), bruteForce(space, ac); got != want {
			t.Fatalf("seed %d: rules %v: oracle %d, brute force %d", seed, rules, got, want)
		}
	}
}

// TestMinimalRoutesOptimal: on random rules in /24 and /120 spaces (up to 8
// blocks with one or two acceptable targets of four, netx.WantAny regions and
// netx.WantDefault holes) ORTC's route set meets every rule and its size equals
// the exact optimum: emitted ÷ optimal = 1.00 on every instance.
func TestMinimalRoutesOptimal(t *testing.T) {
	forSeeds(t, 400, func(t *testing.T, r *rand.Rand, space netip.Prefix) {
		rules := randomRules(r, space, 256, 4, 8)
		ac := acceptanceOf(space, 256, 4, rules)
		want := ac.optimum()
		if want == inf {
			t.Fatalf("rules %v: no route set meets them", rules)
		}
		if n := netx.MinimalRouteCount(rules); n != want {
			t.Fatalf("minimalCount = %d, optimum %d", n, want)
		}
		for _, wide := range []bool{false, true} {
			got := netx.MinimalRoutes(rules, wide)
			if err := ac.satisfied(space, got); err != nil {
				t.Fatalf("rules %v, wide %v: routes %v: %v", rules, wide, got, err)
			}
			if len(got) != want {
				t.Fatalf("rules %v, wide %v: %d routes %v, optimum %d", rules, wide, len(got), got, want)
			}
			if again := netx.MinimalRoutes(shuffledRules(r, rules), wide); !slices.Equal(got, again) {
				t.Fatalf("wide %v: depends on rule order:\n%v\n%v", wide, got, again)
			}
		}
	})
}

func shuffledRules(r *rand.Rand, rules []netx.RouteRule) []netx.RouteRule {
	out := slices.Clone(rules)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func TestMinimalRoutesExamples(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name         string
		rules        []netx.RouteRule
		want         string // with wide; without, wantSpecific where it differs
		wantSpecific string
	}{
		{"nothing", nil, "[]", ""},
		{"aggregate with an exception", []netx.RouteRule{
			{Prefix: p("10.0.0.0/24"), Want: netx.WantAny},
			netx.TargetsRule(p("10.0.0.0/26"), 1, 0),
			netx.TargetsRule(p("10.0.0.64/26"), 1, 0),
			netx.TargetsRule(p("10.0.0.128/26"), 1, 0),
			netx.TargetsRule(p("10.0.0.192/28"), 1, 1),
		}, "[10.0.0.0/24→0 10.0.0.192/26→1]", "[10.0.0.0/24→0 10.0.0.192/28→1]"},
		{"a default hole keeps routes off it", []netx.RouteRule{
			netx.TargetsRule(p("10.0.0.0/25"), 1, 0),
			netx.TargetsRule(p("10.0.0.128/26"), 1, 0),
			{Prefix: p("10.0.0.192/26"), Want: netx.WantDefault, Rank: 1},
		}, "[10.0.0.0/25→0 10.0.0.128/26→0]", ""},
		{"shared target wins", []netx.RouteRule{
			netx.TargetsRule(p("10.0.0.0/25"), 1, 0, 2),
			netx.TargetsRule(p("10.0.0.128/25"), 1, 1, 2),
		}, "[10.0.0.0/24→2]", ""},
		{"unallocated space is free", []netx.RouteRule{
			{Prefix: p("10.0.0.0/24"), Want: netx.WantAny},
			netx.TargetsRule(p("10.0.0.16/28"), 1, 3),
			netx.TargetsRule(p("10.0.0.200/29"), 1, 3),
		}, "[10.0.0.0/24→3]", ""},
		{"both families", []netx.RouteRule{
			netx.TargetsRule(p("10.0.0.0/24"), 1, 0),
			netx.TargetsRule(p("fd00::/64"), 1, 1),
		}, "[10.0.0.0/24→0 fd00::/64→1]", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fmt.Sprint(netx.MinimalRoutes(tt.rules, true)); got != tt.want {
				t.Errorf("netx.MinimalRoutes(wide) = %s, want %s", got, tt.want)
			}
			want := tt.want
			if tt.wantSpecific != "" {
				want = tt.wantSpecific
			}
			if got := fmt.Sprint(netx.MinimalRoutes(tt.rules, false)); got != want {
				t.Errorf("netx.MinimalRoutes(specific) = %s, want %s", got, want)
			}
		})
	}
}
