package ipam

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// Rebase carries old's live state onto a new topology: group prefixes of
// groups that keep their path (in networks that keep their name), hosts
// (placed again by their labels), blocks and endpoints. A new group starts
// with its planned prefix minus whatever carried groups already own. The
// change is allowed only when every live block still lies inside its group
// and the result passes Check; otherwise the conflicts are returned, each
// explained, and no allocator.
func Rebase(old *Allocator, t *topology.Topology, opts Options) (*Allocator, []Finding, error) {
	a, _, err := New(t, opts)
	if err != nil {
		return nil, nil, err
	}
	var conflicts []Finding
	conflict := func(kind, network, subject, format string, args ...any) {
		conflicts = append(conflicts, Finding{Kind: kind, Network: network, Subject: subject, Detail: fmt.Sprintf(format, args...)})
	}
	var changes []Change
	for _, n := range t.Networks {
		// Groups with live blocks below them keep the prefixes they hold
		// (clipped to the network, off reservations); the others take the
		// new plan, minus what the kept ones hold.
		usable := netx.Subtract([]netip.Prefix{n.CIDR}, a.s.nets[n.Name].reserved...)
		live := map[string]bool{}
		carried := map[string][]netip.Prefix{}
		var taken []netip.Prefix
		if on := old.s.topo.Network(n.Name); on != nil {
			for _, b := range old.Blocks(n.Name) {
				for p := b.Group; p != ""; p = parentPath(p) {
					live[p] = true
				}
			}
			for _, g := range n.Tree.All {
				if ps := old.GroupPrefixesOf(n.Name, g.Path); len(ps) > 0 && live[g.Path] && !g.Pinned.IsValid() {
					carried[g.Path] = clip(ps, usable)
					taken = append(taken, carried[g.Path]...)
				}
			}
		}
		for _, g := range n.Tree.All {
			initial := a.GroupPrefixesOf(n.Name, g.Path)
			for _, p := range initial {
				changes = append(changes, Change{Kind: GroupPrefixRemoved, Network: n.Name, Group: g.Path, Prefix: p})
			}
			keep, ok := carried[g.Path]
			if !ok {
				// Pinned, new, or without live blocks: the new plan. A pin
				// wins even over live blocks, which are then reported
				// below as orphaned.
				keep = netx.Subtract(initial, taken...)
			}
			for _, p := range keep {
				changes = append(changes, Change{Kind: GroupPrefixAdded, Network: n.Name, Group: g.Path, Prefix: p})
			}
		}
	}
	if err := a.Apply(changes); err != nil {
		return nil, nil, fmt.Errorf("internal error: carrying group prefixes: %w", err)
	}
	for _, h := range old.Hosts() {
		if _, err := a.AddHost(HostSpec{Name: h.Name, IP: h.IP, IP6: h.IP6, Labels: h.Labels}); err != nil {
			conflict("host-unplaced", "", h.Name, "host %s can no longer be placed: %v", h.Name, err)
		}
	}
	for _, on := range old.s.topo.Networks {
		for _, b := range old.Blocks(on.Name) {
			if a.s.topo.Network(on.Name) == nil {
				conflict("network-removed", on.Name, b.Prefix.String(), "network %s would be removed while block %s of host %s is live", on.Name, b.Prefix, b.Host)
				continue
			}
			c := Change{Kind: BlockClaimed, Network: on.Name, Group: b.Group, Host: b.Host, Prefix: b.Prefix, Issuer: b.Issuer}
			if err := a.Apply([]Change{c}); err != nil {
				conflict("block-orphaned", on.Name, b.Prefix.String(), "live block %s of host %s would leave its group %s: %v", b.Prefix, b.Host, b.Group, err)
			}
		}
	}
	for _, e := range old.Endpoints() {
		c := Change{Kind: EndpointAdded, Network: e.Network, Host: e.Host, Endpoint: e.ID, Namespace: e.Namespace, Addr: e.Addr, Prefix: e.Block, Since: e.Since}
		if err := a.Apply([]Change{c}); err != nil {
			conflict("endpoint-orphaned", e.Network, e.ID, "endpoint %s (%s) would lose its block: %v", e.ID, e.Addr, err)
		}
	}
	for _, ns := range slices.Sorted(maps.Keys(old.s.nsNetworks)) {
		c := Change{Kind: NamespaceNetworkSet, Namespace: ns, Network: old.s.nsNetworks[ns]}
		if err := a.Apply([]Change{c}); err != nil {
			conflict("namespace-network-orphaned", c.Network, ns, "namespace %s defaults to network %s, which the new topology removes or closes to it: %v; clear it first (terrane ctl namespaces unset %s)", ns, c.Network, err, ns)
		}
	}
	// Blocks a host's move left empty in its old group go back.
	for _, h := range a.Hosts() {
		if err := a.releaseDrained(&tx{s: a.s}, h.Name); err != nil {
			return nil, nil, err
		}
	}
	conflicts = append(conflicts, a.Check()...)
	if len(conflicts) > 0 {
		return nil, conflicts, nil
	}
	return a, nil, nil
}

// parentPath is the path of a group's parent ("" at the top).
func parentPath(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// clip is the part of ps inside within, as a minimal cover.
func clip(ps, within []netip.Prefix) []netip.Prefix {
	outside := netx.Subtract([]netip.Prefix{netip.PrefixFrom(ps[0].Addr(), 0).Masked()}, within...)
	return netx.Subtract(ps, outside...)
}
