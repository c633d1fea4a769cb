// Package dataplane owns the contract between the agent and a host's
// forwarding state: a State (the routes one host must carry in Terrane's own
// routing table), the Dataplane interface that converges the host on a State
// by applying only the difference, and Plan, the pure function that computes
// that difference. Adapters live below: linux (netlink, the only importer of
// vishvananda/netlink) and fake (in memory, golden text for tests).
package dataplane

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
)

// Dataplane converges a host on a desired State.
//
// Apply is incremental and idempotent: it changes only routes whose desired
// and actual forms differ, never flushes a table, and never touches a route it
// does not own (another table or another protocol). Applying the same State
// twice returns an empty Diff the second time. The returned Diff lists the
// changes actually made, even when err is non-nil.
type Dataplane interface {
	Apply(ctx context.Context, s State) (Diff, error)
}

// State is the desired dataplane state of one host.
type State struct {
	// Table is the routing table the routes belong in. Zero means the
	// dataplane's own table; the reserved tables (main 254, local 255,
	// default 253) are refused.
	Table int
	// Routes hold at most one route per destination; order does not matter.
	Routes []Route
}

// Route is one unicast kernel route.
type Route struct {
	Dst netip.Prefix
	// Via is the next hop; invalid (the zero Addr) for a device route.
	Via netip.Addr
	// Dev names the outgoing interface (a veth, say). Empty with Via set
	// means "whichever interface the kernel resolves Via to": an actual route
	// on any device then satisfies the desired one.
	Dev   string
	Scope Scope
}

// Scope is a route's scope. IPv6 has no route scopes (the kernel reports
// every IPv6 route as universe), so only ScopeAuto and ScopeUniverse are
// valid on an IPv6 route.
type Scope uint8

const (
	// ScopeAuto is link for an IPv4 device route (no Via) and universe
	// otherwise, as `ip route add` chooses.
	ScopeAuto Scope = iota
	ScopeUniverse
	ScopeLink
	ScopeHost
)

func (s Scope) String() string {
	switch s {
	case ScopeAuto:
		return "auto"
	case ScopeUniverse:
		return "global"
	case ScopeLink:
		return "link"
	case ScopeHost:
		return "host"
	}
	return "scope(" + strconv.Itoa(int(s)) + ")"
}

// defaultScope is what ScopeAuto resolves to for r.
func (r Route) defaultScope() Scope {
	if r.Dst.Addr().Is4() && !r.Via.IsValid() {
		return ScopeLink
	}
	return ScopeUniverse
}

// Normalize returns r in canonical form: Dst masked, Via unmapped, Scope
// resolved (never ScopeAuto; always universe for IPv6). Plan compares
// normalized routes, and every route in a Diff is normalized.
func (r Route) Normalize() Route {
	if a := r.Dst.Addr(); a.Is4In6() && r.Dst.Bits() >= 96 {
		r.Dst = netip.PrefixFrom(a.Unmap(), r.Dst.Bits()-96)
	}
	r.Dst = r.Dst.Masked()
	r.Via = r.Via.Unmap()
	if r.Scope == ScopeAuto || r.Dst.Addr().Is6() {
		r.Scope = r.defaultScope()
	}
	return r
}

// String renders r like `ip route`, printing the scope only when it is not
// the one ScopeAuto would choose: "10.1.0.0/24 via 192.0.2.1",
// "10.1.2.3/32 dev veth1", "10.9.0.0/16 dev veth1 scope global".
func (r Route) String() string {
	var b strings.Builder
	b.WriteString(r.Dst.String())
	if r.Via.IsValid() {
		b.WriteString(" via ")
		b.WriteString(r.Via.String())
	}
	if r.Dev != "" {
		b.WriteString(" dev ")
		b.WriteString(r.Dev)
	}
	if r.Scope != ScopeAuto && r.Scope != r.defaultScope() {
		b.WriteString(" scope ")
		b.WriteString(r.Scope.String())
	}
	return b.String()
}

// satisfies reports whether the actual route have fulfils the desired route
// want; both normalized. A desired route without Dev accepts any device.
func satisfies(want, have Route) bool {
	return want.Dst == have.Dst && want.Via == have.Via && want.Scope == have.Scope &&
		(want.Dev == "" || want.Dev == have.Dev)
}

// CompareRoutes orders routes by destination (IPv4 first), then next hop,
// device and scope.
func CompareRoutes(a, b Route) int {
	if c := a.Dst.Compare(b.Dst); c != 0 {
		return c
	}
	if c := a.Via.Compare(b.Via); c != 0 {
		return c
	}
	if c := strings.Compare(a.Dev, b.Dev); c != 0 {
		return c
	}
	return int(a.Scope) - int(b.Scope)
}

// Diff is the difference between a host's actual routes and a State, as the
// changes that converge the one on the other. Each list is sorted.
type Diff struct {
	// Added are routes to destinations that had no route.
	Added []Route
	// Replaced are routes changed in place (same destination, new next hop,
	// device or scope): one atomic replace, no moment without a route.
	Replaced []Replacement
	// Removed are routes to destinations no longer desired, and surplus
	// routes to a destination that has a desired one.
	Removed []Route
}

// Replacement is one route changed in place.
type Replacement struct {
	From, To Route
}

// Empty reports whether d changes nothing.
func (d Diff) Empty() bool {
	return len(d.Added) == 0 && len(d.Replaced) == 0 && len(d.Removed) == 0
}

// String renders d one change a line: "+ route", "~ old -> new", "- route".
func (d Diff) String() string {
	var b strings.Builder
	for _, r := range d.Added {
		b.WriteString("+ " + r.String() + "\n")
	}
	for _, r := range d.Replaced {
		b.WriteString("~ " + r.From.String() + " -> " + r.To.String() + "\n")
	}
	for _, r := range d.Removed {
		b.WriteString("- " + r.String() + "\n")
	}
	return b.String()
}
