package dataplane

import (
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func TestPlan(t *testing.T) {
	tests := []struct {
		name            string
		desired, actual []string
		want            string
	}{
		{name: "nothing"},
		{
			name:    "add to an empty table, sorted, IPv4 first",
			desired: []string{"2001:db8::/64 via 2001:db8:ff::1", "10.2.0.0/24 via 192.0.2.2", "10.1.0.5/32 dev veth1"},
			want: "+ 10.1.0.5/32 dev veth1\n" +
				"+ 10.2.0.0/24 via 192.0.2.2\n" +
				"+ 2001:db8::/64 via 2001:db8:ff::1\n",
		},
		{
			name:    "identical sets change nothing",
			desired: []string{"10.1.0.5/32 dev veth1", "10.2.0.0/24 via 192.0.2.2"},
			actual:  []string{"10.2.0.0/24 via 192.0.2.2", "10.1.0.5/32 dev veth1 scope link"},
		},
		{
			name:    "a route without dev accepts the device the kernel chose",
			desired: []string{"10.2.0.0/24 via 192.0.2.2", "2001:db8::/64 via 2001:db8:ff::1"},
			actual:  []string{"10.2.0.0/24 via 192.0.2.2 dev eth0", "2001:db8::/64 via 2001:db8:ff::1 dev eth0"},
		},
		{
			name:    "IPv6 device routes are universe in the kernel",
			desired: []string{"2001:db8::5/128 dev veth1"},
			actual:  []string{"2001:db8::5/128 dev veth1 scope global"},
		},
		{
			name:    "host bits and mapped addresses are normalized away",
			desired: []string{"10.2.0.9/24 via ::ffff:192.0.2.2", "::ffff:10.3.0.0/120 via 192.0.2.2"},
			actual:  []string{"10.2.0.0/24 via 192.0.2.2", "10.3.0.0/24 via 192.0.2.2"},
		},
		{
			name:    "a changed next hop, device or scope is replaced in place",
			desired: []string{"10.2.0.0/24 via 192.0.2.3", "10.1.0.5/32 dev veth2", "10.1.0.6/32 dev veth1 scope global"},
			actual:  []string{"10.2.0.0/24 via 192.0.2.2", "10.1.0.5/32 dev veth1", "10.1.0.6/32 dev veth1"},
			want: "~ 10.1.0.5/32 dev veth1 -> 10.1.0.5/32 dev veth2\n" +
				"~ 10.1.0.6/32 dev veth1 -> 10.1.0.6/32 dev veth1 scope global\n" +
				"~ 10.2.0.0/24 via 192.0.2.2 -> 10.2.0.0/24 via 192.0.2.3\n",
		},
		{
			name:    "a desired dev is not satisfied by another dev",
			desired: []string{"10.2.0.0/24 via 192.0.2.2 dev eth1"},
			actual:  []string{"10.2.0.0/24 via 192.0.2.2 dev eth0"},
			want:    "~ 10.2.0.0/24 via 192.0.2.2 dev eth0 -> 10.2.0.0/24 via 192.0.2.2 dev eth1\n",
		},
		{
			name:    "stale routes are removed, kept ones untouched",
			desired: []string{"10.2.0.0/24 via 192.0.2.2"},
			actual:  []string{"2001:db8::/64 via 2001:db8:ff::1", "10.2.0.0/24 via 192.0.2.2", "10.1.0.5/32 dev veth1"},
			want:    "- 10.1.0.5/32 dev veth1\n- 2001:db8::/64 via 2001:db8:ff::1\n",
		},
		{
			name:    "a surplus route beside a satisfying one is removed",
			desired: []string{"10.2.0.0/24 via 192.0.2.2"},
			actual:  []string{"10.2.0.0/24 via 192.0.2.1", "10.2.0.0/24 via 192.0.2.2"},
			want:    "- 10.2.0.0/24 via 192.0.2.1\n",
		},
		{
			name:    "with no satisfying route the first is replaced, the rest removed",
			desired: []string{"10.2.0.0/24 via 192.0.2.9"},
			actual:  []string{"10.2.0.0/24 via 192.0.2.2", "10.2.0.0/24 via 192.0.2.1"},
			want:    "~ 10.2.0.0/24 via 192.0.2.1 -> 10.2.0.0/24 via 192.0.2.9\n- 10.2.0.0/24 via 192.0.2.2\n",
		},
		{
			name:    "aggregating: new prefixes added, old one removed",
			desired: []string{"10.2.0.0/23 via 192.0.2.2"},
			actual:  []string{"10.2.0.0/24 via 192.0.2.2", "10.2.1.0/24 via 192.0.2.2"},
			want:    "+ 10.2.0.0/23 via 192.0.2.2\n- 10.2.0.0/24 via 192.0.2.2\n- 10.2.1.0/24 via 192.0.2.2\n",
		},
		{
			name:    "default routes are ordinary destinations",
			desired: []string{"0.0.0.0/0 via 192.0.2.1", "::/0 via 2001:db8:ff::1"},
			actual:  []string{"0.0.0.0/0 via 192.0.2.2"},
			want:    "+ ::/0 via 2001:db8:ff::1\n~ 0.0.0.0/0 via 192.0.2.2 -> 0.0.0.0/0 via 192.0.2.1\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			desired, actual := routes(t, tt.desired...), routes(t, tt.actual...)
			got := Plan(desired, actual)
			if got.String() != tt.want {
				t.Errorf("Plan:\n%s\nwant:\n%s", got, tt.want)
			}
			if got.Empty() != (tt.want == "") {
				t.Errorf("Empty() = %v for %q", got.Empty(), got)
			}
			checkPlan(t, desired, actual, got)
		})
	}
}

// TestPlanProperties checks Plan on random sets against what applying the
// Diff must achieve.
func TestPlanProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		desired, actual := randomRoutes(rng, true), randomRoutes(rng, false)
		d := Plan(desired, actual)
		if t.Failed() {
			return
		}
		checkPlan(t, desired, actual, d)
		if t.Failed() {
			t.Fatalf("case %d: desired %v actual %v diff:\n%s", i, desired, actual, d)
		}
	}
}

// FuzzPlan drives the same properties from fuzzed bytes.
func FuzzPlan(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{8, 7, 6, 5})
	f.Add([]byte{}, []byte{0, 0, 0, 0, 9, 9, 9, 9})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		desired := routesFromBytes(a, true)
		actual := routesFromBytes(b, false)
		checkPlan(t, desired, actual, Plan(desired, actual))
	})
}

// checkPlan asserts what any Diff from Plan must satisfy: applying it to
// actual yields exactly one satisfying route per desired destination and
// nothing else; applying it leaves nothing to do; the lists are sorted and
// normalized; and input order does not matter.
func checkPlan(t *testing.T, desired, actual []Route, d Diff) {
	t.Helper()
	got := applyDiff(t, actual, d)
	want := normalizeAll(desired)
	want = slices.CompactFunc(want, func(a, b Route) bool { return a.Dst == b.Dst })
	if len(got) != len(want) {
		t.Fatalf("after applying, %d routes, want %d: %v vs %v", len(got), len(want), got, want)
	}
	for i := range want {
		if !satisfies(want[i], got[i]) {
			t.Errorf("after applying, %v does not satisfy %v", got[i], want[i])
		}
	}
	if again := Plan(desired, got); !again.Empty() {
		t.Errorf("second Plan not empty:\n%s", again)
	}
	for _, l := range [][]Route{d.Added, d.Removed, replacedTo(d)} {
		if !slices.IsSortedFunc(l, CompareRoutes) {
			t.Errorf("not sorted: %v", l)
		}
		for _, r := range l {
			if r != r.Normalize() {
				t.Errorf("not normalized: %v", r)
			}
		}
	}
	rev := func(rs []Route) []Route { c := slices.Clone(rs); slices.Reverse(c); return c }
	if d2 := Plan(rev(desired), rev(actual)); d2.String() != d.String() {
		t.Errorf("Plan depends on input order:\n%s\nvs\n%s", d, d2)
	}
}

func replacedTo(d Diff) []Route {
	var out []Route
	for _, c := range d.Replaced {
		out = append(out, c.To)
	}
	return out
}

// applyDiff plays d on actual as an adapter would and returns the result,
// normalized and sorted.
func applyDiff(t *testing.T, actual []Route, d Diff) []Route {
	t.Helper()
	cur := normalizeAll(actual)
	cur = slices.Compact(cur)
	for _, r := range d.Added {
		if slices.ContainsFunc(cur, func(x Route) bool { return x.Dst == r.Dst }) {
			t.Errorf("added %v over an existing route", r)
		}
		cur = append(cur, r)
	}
	for _, c := range d.Replaced {
		i := slices.Index(cur, c.From)
		if i < 0 || c.From.Dst != c.To.Dst {
			t.Errorf("replacement %v -> %v: no such route or another destination", c.From, c.To)
			continue
		}
		cur[i] = c.To
	}
	for _, r := range d.Removed {
		i := slices.Index(cur, r)
		if i < 0 {
			t.Errorf("removed %v: no such route", r)
			continue
		}
		cur = slices.Delete(cur, i, i+1)
	}
	slices.SortFunc(cur, CompareRoutes)
	return cur
}

// A small universe, so random sets collide often.
var (
	testDsts = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("10.0.0.0/23"),
		netip.MustParsePrefix("10.0.1.0/24"), netip.MustParsePrefix("10.0.0.7/32"),
		netip.MustParsePrefix("2001:db8::/64"), netip.MustParsePrefix("2001:db8::7/128"),
	}
	testVia4 = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}
	testVia6 = []netip.Addr{netip.MustParseAddr("2001:db8:ff::1"), netip.MustParseAddr("2001:db8:ff::2")}
	testDevs = []string{"", "veth1", "veth2"}
)

func makeRoute(dst, via, dev, scope int, desired bool) Route {
	r := Route{Dst: testDsts[dst%len(testDsts)]}
	vias := testVia4
	if r.Dst.Addr().Is6() {
		vias = testVia6
	}
	if v := via % (len(vias) + 1); v < len(vias) {
		r.Via = vias[v]
	}
	r.Dev = testDevs[dev%len(testDevs)]
	if !desired && r.Dev == "" && !r.Via.IsValid() {
		r.Dev = "veth1" // the kernel always reports a device or a next hop
	}
	if !desired && r.Dev == "" {
		r.Dev = "eth0" // and resolves the device of a next hop
	}
	r.Scope = Scope(scope % 4)
	return r
}

func randomRoutes(rng *rand.Rand, desired bool) []Route {
	n := rng.IntN(6)
	rs := make([]Route, n)
	for i := range rs {
		rs[i] = makeRoute(rng.IntN(100), rng.IntN(100), rng.IntN(100), rng.IntN(100), desired)
	}
	return rs
}

func routesFromBytes(b []byte, desired bool) []Route {
	var rs []Route
	for ; len(b) >= 4 && len(rs) < 16; b = b[4:] {
		rs = append(rs, makeRoute(int(b[0]), int(b[1]), int(b[2]), int(b[3]), desired))
	}
	return rs
}

// TestPlanWritesMakeBeforeBreak: applying a plan's Writes, then its
// removals, leaves every address that both the old and the new table route
// on its old next hop or its new one at every step (never a new aggregate
// ahead of its exception), and ends at the new table. 2,000 random pairs of
// overlapping route sets in a /24.
func TestPlanWritesMakeBeforeBreak(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	hops := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")}
	randomSet := func() []Route {
		set := map[netip.Prefix]Route{}
		for range 1 + r.IntN(8) {
			p, _ := netip.AddrFrom4([4]byte{10, 0, 0, byte(r.IntN(256))}).Prefix(24 + r.IntN(7))
			set[p] = Route{Dst: p, Via: hops[r.IntN(len(hops))]}
		}
		return slices.Collect(maps.Values(set))
	}
	lpm := func(table map[netip.Prefix]netip.Addr, a netip.Addr) netip.Addr {
		best, hop := -1, netip.Addr{}
		for p, h := range table {
			if p.Contains(a) && p.Bits() > best {
				best, hop = p.Bits(), h
			}
		}
		return hop
	}
	asTable := func(rs []Route) map[netip.Prefix]netip.Addr {
		m := map[netip.Prefix]netip.Addr{}
		for _, rt := range rs {
			m[rt.Dst] = rt.Via
		}
		return m
	}
	for i := range 2000 {
		old, next := randomSet(), randomSet()
		oldT, nextT, table := asTable(old), asTable(next), asTable(old)
		d := Plan(next, old)
		check := func(what string) {
			for a := netip.MustParseAddr("10.0.0.0"); a.As4()[2] == 0; a = a.Next() {
				was, will := lpm(oldT, a), lpm(nextT, a)
				if !was.IsValid() || !will.IsValid() {
					continue
				}
				if now := lpm(table, a); now != was && now != will {
					t.Fatalf("pair %d, after %s: %s goes via %s; it went via %s and will go via %s\nold %v\nnew %v", i, what, a, now, was, will, old, next)
				}
			}
		}
		for _, w := range d.Writes() {
			table[w.To.Dst] = w.To.Via
			check("writing " + w.To.String())
		}
		for _, rm := range d.Removed {
			delete(table, rm.Dst)
			check("removing " + rm.String())
		}
		if !maps.Equal(table, nextT) {
			t.Fatalf("pair %d: ends at %v, want %v", i, table, nextT)
		}
	}
}
