package ipam

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/terrane-net/terrane/internal/netx"
)

// Finding is one inconsistency Check or Audit found, with what it means.
type Finding struct {
	Kind    string `json:"kind"`
	Network string `json:"network,omitempty"`
	Subject string `json:"subject"`
	Detail  string `json:"detail"`
	// Host, Block and Addr place the finding where one applies.
	Host  string       `json:"host,omitempty"`
	Block netip.Prefix `json:"block,omitzero"`
	Addr  netip.Addr   `json:"addr,omitzero"`
	// Holders names who holds the address (endpoints, pods).
	Holders []Holder `json:"holders,omitempty"`
	// Since is when the problem began, as far as the state tells.
	Since time.Time `json:"since,omitzero"`
	// Due is when an automatic action on the finding falls due (an
	// orphaned pod address's release).
	Due time.Time `json:"due,omitzero"`
	// Release is the VM port (server endpoint) a repair releases: set only
	// where the finding proves it leaked.
	Release string `json:"release,omitempty"`
}

// Check verifies the invariants that state changes alone cannot guarantee
// (they hold by construction for an allocator driven only by its
// operations, but not for state loaded from a store or carried across a
// topology change): group prefixes inside the network, off reservations,
// inside their parent's and disjoint from their siblings'; blocks inside
// their group; empty server blocks of groups their host has left (an
// agent's block of a left group drains at the agent's pace).
func (a *Allocator) Check() []Finding {
	var out []Finding
	add := func(kind, network, subject, format string, args ...any) {
		out = append(out, Finding{Kind: kind, Network: network, Subject: subject, Detail: fmt.Sprintf(format, args...)})
	}
	for _, n := range a.s.topo.Networks {
		ns := a.s.nets[n.Name]
		for _, g := range n.Tree.All {
			owned := ns.owned[g]
			for _, p := range owned {
				switch {
				case !netx.Covers(n.CIDR, p):
					add("prefix-outside-network", n.Name, g.Path, "group prefix %s is outside the network %s: addresses from it would not be routed as the network's", p, n.CIDR)
				case netx.AnyOverlap(p, ns.reserved):
					add("prefix-overlaps-reservation", n.Name, g.Path, "group prefix %s overlaps a reservation or service CIDR: addresses from it could collide with reserved ones", p)
				}
				if g.Parent != nil && !netx.CoveredBy(p, ns.owned[g.Parent]) && !coveredByAll(p, ns.owned[g.Parent]) {
					add("prefix-outside-parent", n.Name, g.Path, "group prefix %s is not inside the prefixes of its parent %s (%s): the parent's aggregate route would miss it", p, g.Parent.Path, prefixList(ns.owned[g.Parent]))
				}
			}
			sibs := n.Tree.Groups
			if g.Parent != nil {
				sibs = g.Parent.Children
			}
			for _, o := range sibs {
				if o.Index <= g.Index {
					continue
				}
				for _, p := range owned {
					if q, ok := overlapping(p, ns.owned[o]); ok {
						add("prefixes-overlap", n.Name, g.Path, "group prefix %s overlaps %s of sibling group %s: both groups' routes would claim the same addresses", p, q, o.Path)
					}
				}
			}
		}
		for _, p := range sortedPrefixes(ns.blocks) {
			b := ns.blocks[p]
			if !netx.CoveredBy(p, ns.owned[b.group]) {
				add("block-outside-group", n.Name, p.String(), "block %s of host %s lies outside the prefixes of its group %s (%s)", p, b.host, b.group.Path, prefixList(ns.owned[b.group]))
			}
			if h := a.s.hosts[b.host]; h != nil && h.leaf[n.Name] != b.group && b.count == 0 && b.issuer == IssuerServer {
				add("orphan-block", n.Name, p.String(), "block %s is empty and belongs to group %s, which its host %s has left: it should have been released", p, b.group.Path, b.host)
			}
		}
	}
	return out
}

func coveredByAll(p netip.Prefix, ps []netip.Prefix) bool {
	return len(netx.Subtract([]netip.Prefix{p}, ps...)) == 0
}

func overlapping(p netip.Prefix, ps []netip.Prefix) (netip.Prefix, bool) {
	for _, q := range ps {
		if p.Overlaps(q) {
			return q, true
		}
	}
	return netip.Prefix{}, false
}
