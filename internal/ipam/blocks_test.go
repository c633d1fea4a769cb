package ipam

import (
	"fmt"
	"net/netip"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/terrane-net/terrane/internal/netx"
)

const oneGroupYAML = `
networks:
  - {name: net, cidr: 10.0.0.0/24, blockSize: 30}
topologies:
  - networks: [net]
    groups: [{name: all}]
`

// TestBlockHysteresis: an emptied block goes back unless it is the host's
// last empty block in its group, which it keeps for the next endpoint.
func TestBlockHysteresis(t *testing.T) {
	a := mustNew(t, oneGroupYAML, Options{})
	mustAddHost(t, a, "h", nil)
	var eps []Endpoint
	for i := range 5 {
		eps = append(eps, mustAlloc(t, a, EndpointRequest{ID: "e" + strconv.Itoa(i), Host: "h"}))
	}
	b1, b2 := eps[0].Block, eps[4].Block
	if b1 != pfx("10.0.0.0/30") || b2 != pfx("10.0.0.4/30") {
		t.Fatalf("blocks %s, %s; want 10.0.0.0/30 and its buddy 10.0.0.4/30", b1, b2)
	}

	// b2 empties and is h's only empty block: kept.
	if d := cmp.Diff([]ChangeKind{EndpointReleased}, kinds(mustRelease(t, a, "e4"))); d != "" {
		t.Errorf("release e4 (-want +got):\n%s", d)
	}
	for _, id := range []string{"e0", "e1", "e2"} {
		mustRelease(t, a, id)
	}
	// b1 empties while b2 is empty too: released.
	ch := mustRelease(t, a, "e3")
	if d := cmp.Diff([]ChangeKind{EndpointReleased, BlockReleased}, kinds(ch)); d != "" {
		t.Fatalf("release e3 (-want +got):\n%s", d)
	}
	if ch[1].Prefix != b1 || ch[1].Host != "h" {
		t.Errorf("released %s of %s, want %s of h", ch[1].Prefix, ch[1].Host, b1)
	}
	if got := blocksOf(a, "net", "h"); !cmp.Equal(got, []netip.Prefix{b2}, cmpOpts...) {
		t.Errorf("blocks %v, want only %s", got, b2)
	}
	// The kept block serves the next endpoint without a new claim.
	ep, ch, err := a.AllocateEndpoint(EndpointRequest{ID: "e5", Host: "h"})
	if err != nil || ep.Block != b2 || len(ch) != 1 {
		t.Errorf("next endpoint %s in %s with %v, %v; want one change in %s", ep.Addr, ep.Block, ch, err, b2)
	}
	// Releasing an unknown endpoint is not an error and changes nothing.
	if ch, err := a.ReleaseEndpoint("never"); err != nil || len(ch) != 0 {
		t.Errorf("ReleaseEndpoint(never) = %v, %v", ch, err)
	}
}

func TestReleaseBlock(t *testing.T) {
	a := mustNew(t, oneGroupYAML, Options{})
	mustAddHost(t, a, "owner", nil)
	mustAddHost(t, a, "thief", nil)
	full := mustAlloc(t, a, EndpointRequest{ID: "e", Host: "owner"}).Block
	empty, _, err := a.ClaimBlock("owner", "net")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, host, network string
		p                   netip.Prefix
		err                 error
		words               []string
	}{
		// Invariant 5: a host releases only its own blocks.
		{"not the owner", "thief", "net", empty, ErrInvalid, []string{"owner", "thief"}},
		{"not empty", "owner", "net", full, ErrConflict, []string{"endpoints"}},
		{"no such block", "owner", "net", pfx("10.0.0.252/30"), ErrNotFound, []string{"10.0.0.252/30"}},
		{"unknown host", "ghost", "net", empty, ErrNotFound, []string{"ghost"}},
		{"unknown network", "owner", "nonet", empty, ErrNotFound, []string{"nonet"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := unchanged(t, a, func() ([]Change, error) { return a.ReleaseBlock(tt.host, tt.network, tt.p) })
			wantErr(t, err, tt.err, tt.words...)
		})
	}
	ch, err := a.ReleaseBlock("owner", "net", empty)
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{{Kind: BlockReleased, Network: "net", Group: "all", Host: "owner", Prefix: empty, Issuer: IssuerAgent}}
	if d := cmp.Diff(want, ch, cmpOpts...); d != "" {
		t.Errorf("changes (-want +got):\n%s", d)
	}
	for _, tt := range []struct{ host, network string }{{"ghost", "net"}, {"owner", "nonet"}} {
		err := unchanged(t, a, func() ([]Change, error) { _, ch, err := a.ClaimBlock(tt.host, tt.network); return ch, err })
		wantErr(t, err, ErrNotFound)
	}
}

func TestStaticExhaustion(t *testing.T) {
	a := mustNew(t, `
networks: [{name: net, cidr: 10.0.0.0/26, blockSize: 28}]
topologies:
  - networks: [net]
    groups: [{name: a}, {name: b}]
`, Options{Mode: Static})
	mustAddHost(t, a, "h", nil) // a and b tie: a
	for i := range 32 {
		mustAlloc(t, a, EndpointRequest{ID: "e" + strconv.Itoa(i), Host: "h"})
	}
	err := unchanged(t, a, allocOp(a, EndpointRequest{ID: "more", Host: "h"}))
	wantErr(t, err, ErrExhausted, "group a", "static")
	err = unchanged(t, a, func() ([]Change, error) { _, ch, err := a.ClaimBlock("h", "net"); return ch, err })
	wantErr(t, err, ErrExhausted, "group a")
	if got := a.GroupPrefixes("net")["a"]; !cmp.Equal(got, pfxs("10.0.0.0/27"), cmpOpts...) {
		t.Errorf("static group grew to %v", got)
	}
}

// TestElasticGrowthPrefersBuddy: a full leaf doubles inside its home, one
// prefix all along, before it looks anywhere else.
func TestElasticGrowthPrefersBuddy(t *testing.T) {
	top := mustLoad(t, twoZoneYAML)
	a, _, err := New(top, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustAddHost(t, a, "h", map[string]string{"zone": "b"})
	home := top.Network("net").Homes[top.Trees[0].Group("b")] // 10.0.0.128/25
	want := []string{"/28", "/27", "/26", "/26", "/25", "/25", "/25", "/25"}
	var blocks []netip.Prefix
	for i, w := range want {
		p, _, err := a.ClaimBlock("h", "net")
		if err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
		blocks = append(blocks, p)
		got := a.GroupPrefixes("net")["b"]
		if len(got) != 1 || !netx.Covers(home, got[0]) || "/"+strconv.Itoa(got[0].Bits()) != w || got[0].Addr() != home.Addr() {
			t.Fatalf("after %d blocks group b owns %v; want one %s at the start of its home %s", i+1, got, w, home)
		}
	}
	// Blocks merge: every one is the buddy of a neighbour, 8 blocks = home.
	if d := cmp.Diff(pfxs(home.String()), netx.Cover(blocks...), cmpOpts...); d != "" {
		t.Errorf("blocks do not merge into the home (-want +got):\n%s", d)
	}
	// Full home: the group grows elsewhere, into space no group uses.
	p, ch, err := a.ClaimBlock("h", "net")
	if err != nil {
		t.Fatalf("claim past the home: %v", err)
	}
	if netx.Covers(home, p) {
		t.Errorf("block %s inside the full home %s", p, home)
	}
	if ch[0].Kind != GroupPrefixAdded || ch[len(ch)-1].Kind != BlockClaimed {
		t.Errorf("growth changes %v: want group prefixes added, then the block", ch)
	}
	if got := a.GroupPrefixes("net")["b"]; len(got) != 2 {
		t.Errorf("group b owns %v; want its home and one more prefix", got)
	}
	if netx.AnyOverlap(p, pfxs("10.0.0.16/28")) {
		t.Errorf("block %s overlaps the reservation", p)
	}
}

const vpcYAML = `
networks: [{name: net, cidr: 10.0.0.0/24, blockSize: 28}]
topologies:
  - networks: [net]
    groups:
      - {name: a, routing: %[1]s, %[2]s assignment: {matchLabels: {zone: a}}}
      - {name: b, routing: %[1]s, %[2]s assignment: {matchLabels: {zone: b}}}
      - {name: c, routing: %[1]s, %[2]s assignment: {matchLabels: {zone: c}}}
`

// TestRouteBudget: growth that would need a route past the budget fails
// with ErrRouteBudget; without the budget the same request succeeds.
func TestRouteBudget(t *testing.T) {
	for _, tt := range []struct {
		name    string
		yaml    string
		budgets Budgets
		words   []string
	}{
		{"vpc", fmt.Sprintf(vpcYAML, "vpc", ""), Budgets{VPC: 3}, []string{"budget", "vpc", "3"}},
		{"bgp", fmt.Sprintf(vpcYAML, "bgp", "advertise: group,"), Budgets{BGP: 1}, []string{"budget", "bgp", "group a"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			setup := func(b Budgets) *Allocator {
				a := mustNew(t, tt.yaml, Options{Budgets: b})
				for _, z := range []string{"a", "b", "c"} {
					mustAddHost(t, a, "h"+z, map[string]string{"zone": z})
					// b and c use their space, so none of it can be lent.
					if _, _, err := a.ClaimBlock("h"+z, "net"); err != nil {
						t.Fatal(err)
					}
				}
				// a's home /26 holds 4 blocks, one its agent's; growing by
				// buddies keeps it one route. The server's endpoints fill
				// the other three.
				for i := range 48 {
					mustAlloc(t, a, EndpointRequest{ID: "e" + strconv.Itoa(i), Host: "ha"})
				}
				return a
			}
			a := setup(tt.budgets)
			vpc, bgp := a.RouteFloors("net")
			err := unchanged(t, a, func() ([]Change, error) { _, ch, err := a.ClaimBlock("ha", "net"); return ch, err })
			wantErr(t, err, ErrRouteBudget, tt.words...)
			if v2, b2 := a.RouteFloors("net"); v2 != vpc || b2 != bgp {
				t.Errorf("route floors moved from %d,%d to %d,%d", vpc, bgp, v2, b2)
			}
			err = unchanged(t, a, allocOp(a, EndpointRequest{ID: "more", Host: "ha"}))
			wantErr(t, err, ErrRouteBudget, "budget")

			// Without a budget the group grows.
			a = setup(Budgets{})
			if _, _, err := a.ClaimBlock("ha", "net"); err != nil {
				t.Fatalf("unbudgeted growth: %v", err)
			}
			if got := a.GroupPrefixes("net")["a"]; len(got) != 2 {
				t.Errorf("group a owns %v, want 2 prefixes", got)
			}
		})
	}
}

func TestReservationsNeverAllocated(t *testing.T) {
	const y = `
networks: [{name: net, cidr: 10.0.0.0/26, blockSize: 28}]
topologies:
  - networks: [net]
    groups: [{name: all}]
reservations: [10.0.0.16/28, 10.0.0.34/32]
serviceCIDRs: [10.96.0.0/12]
`
	reserved := pfxs("10.0.0.16/28", "10.0.0.34/32")
	for _, mode := range []PlanMode{Static, Elastic} {
		t.Run(mode.String(), func(t *testing.T) {
			a := mustNew(t, y, Options{Mode: mode})
			mustAddHost(t, a, "h", nil)
			seen := map[netip.Addr]bool{}
			// Only 10.0.0.0/28 and 10.0.0.48/28 are whole blocks clear
			// of the reservations.
			for i := range 32 {
				ep := mustAlloc(t, a, EndpointRequest{ID: "e" + strconv.Itoa(i), Host: "h"})
				if seen[ep.Addr] {
					t.Fatalf("%s handed out twice", ep.Addr)
				}
				seen[ep.Addr] = true
				if netx.AnyOverlap(ep.Block, reserved) {
					t.Fatalf("endpoint %s in block %s overlapping a reservation", ep.Addr, ep.Block)
				}
			}
			err := unchanged(t, a, allocOp(a, EndpointRequest{ID: "more", Host: "h"}))
			wantErr(t, err, ErrExhausted)
			for _, ps := range a.GroupPrefixes("net") {
				for _, p := range ps {
					if netx.AnyOverlap(p, reserved) {
						t.Errorf("group prefix %s overlaps a reservation", p)
					}
				}
			}
			if u := a.Usage("net"); u.Capacity != 64-16-1 || u.Allocated != 32 || u.InBlocks != 32 {
				t.Errorf("usage %+v; want capacity 47, 32 allocated in 32", u)
			}
		})
	}
}

func TestIPv6(t *testing.T) {
	a := mustNew(t, `
networks:
  - {name: small, cidr: "fd00:1::/120", blockSize: 126, default: true}
  - {name: wide, cidr: "fd00:2::/48", blockSize: 112}
topologies:
  - networks: [small, wide]
    groups: [{name: a}, {name: b}]
`, Options{})
	mustAddHost(t, a, "h", nil)
	seen := map[netip.Addr]bool{}
	for i := range 40 {
		ep := mustAlloc(t, a, EndpointRequest{ID: "e" + strconv.Itoa(i), Host: "h"})
		if seen[ep.Addr] || !pfx("fd00:1::/121").Contains(ep.Addr) || ep.Block.Bits() != 126 {
			t.Fatalf("endpoint %s in %s: want a fresh address in a's home fd00:1::/121", ep.Addr, ep.Block)
		}
		seen[ep.Addr] = true
	}
	if got := a.GroupPrefixes("small")["a"]; len(got) != 1 || got[0].Bits() != 122 {
		t.Errorf("group a owns %v; want one /122 (10 blocks of /126 rounded up to 16)", got)
	}
	ep := mustAlloc(t, a, EndpointRequest{ID: "w", Host: "h", Network: "wide"})
	if ep.Addr != addr("fd00:2::") || ep.Block != pfx("fd00:2::/112") {
		t.Errorf("wide endpoint %s in %s, want fd00:2:: in fd00:2::/112", ep.Addr, ep.Block)
	}
	ep = mustAlloc(t, a, EndpointRequest{ID: "w2", Host: "h", Network: "wide", Addr: addr("fd00:2::ffff")})
	if ep.Block != pfx("fd00:2::/112") {
		t.Errorf("requested fd00:2::ffff in %s", ep.Block)
	}
}

// TestPinnedGroupNeverGrows: a leaf under a pinned group grows only inside
// the pin; it never reaches past it for the network's free space.
func TestPinnedGroupNeverGrows(t *testing.T) {
	a := mustNew(t, `
networks: [{name: net, cidr: 10.0.0.0/24, blockSize: 28}]
topologies:
  - networks: [net]
    groups:
      - name: z
        prefix: 10.0.0.0/26
        assignment: {matchLabels: {zone: z}}
        groups: [{name: r}]
      - name: other
        assignment: {matchLabels: {zone: o}}
`, Options{})
	mustAddHost(t, a, "h", map[string]string{"zone": "z"})
	for i := range 4 {
		if _, _, err := a.ClaimBlock("h", "net"); err != nil {
			t.Fatalf("claim %d inside the pin: %v", i, err)
		}
	}
	err := unchanged(t, a, func() ([]Change, error) { _, ch, err := a.ClaimBlock("h", "net"); return ch, err })
	wantErr(t, err, ErrExhausted)
	want := map[string][]netip.Prefix{"z": pfxs("10.0.0.0/26"), "z/r": pfxs("10.0.0.0/26"), "other": pfxs("10.0.0.128/28")}
	if d := cmp.Diff(want, a.GroupPrefixes("net"), cmpOpts...); d != "" {
		t.Errorf("group prefixes (-want +got):\n%s", d)
	}
}
