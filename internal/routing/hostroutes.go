package routing

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// HostRoutes is the kernel route set of one host: a host route for each of
// its endpoints, and towards its L2 peers (the other hosts on the same
// non-empty Segment) the smallest route set via the peers' addresses that
// sends every block of every peer to its owner (ORTC, see netx.MinimalRoutes):
// one merged set per peer where the peers' blocks lie apart, an aggregate
// towards one peer with more specific routes to others where they
// interleave. A route may cover the segment's free space (prefixes of
// the segment's group and its l2 subgroups that no block holds); never the
// host's own blocks or a block of a host off the segment, whose addresses
// keep the default route: the fabric (ToR or cloud table) carries them.
// A peer without an address of the network's family (an IPv6 network's
// peer whose agent has no --ip6) is left out: its blocks keep the default
// route too. Routes are sorted by destination, then peer name.
func HostRoutes(in Input, host string) ([]Route, error) {
	self, err := lookupHost(in.Hosts, host)
	if err != nil {
		return nil, fmt.Errorf("host routes for %q: %w", host, err)
	}
	eps := slices.Clone(self.Endpoints)
	slices.SortFunc(eps, func(a, b netip.Addr) int { return a.Compare(b) })
	eps = slices.Compact(eps)
	var routes []Route
	for _, a := range eps {
		if !a.IsValid() {
			return nil, fmt.Errorf("host routes for %q: an endpoint address is invalid", host)
		}
		routes = append(routes, Route{Dst: hostPrefix(a), Host: self.Name, Local: true})
	}
	p := newPeerProblem(in, self)
	if len(p.peers) > 0 {
		for _, r := range netx.MinimalRoutes(p.rules, false) {
			peer := p.peers[r.Target]
			routes = append(routes, Route{Dst: r.Prefix, Via: peer.IP, Host: peer.Name})
		}
	}
	sortRoutes(routes)
	return routes, nil
}

// PeerRoutesOptimum is the fewest routes towards its L2 peers host can
// hold and still reach every peer's block through its owner, counted by
// ORTC's bottom-up pass alone (HostRoutes emits that many).
func PeerRoutesOptimum(in Input, host string) (int, error) {
	self, err := lookupHost(in.Hosts, host)
	if err != nil {
		return 0, fmt.Errorf("peer routes of %q: %w", host, err)
	}
	p := newPeerProblem(in, self)
	if len(p.peers) == 0 {
		return 0, nil
	}
	return netx.MinimalRouteCount(p.rules), nil
}

// peerProblem is one host's routes to its L2 peers as ORTC rules: target i
// is peers[i].
type peerProblem struct {
	peers []*Host
	rules []netx.RouteRule
}

func newPeerProblem(in Input, self *Host) peerProblem {
	var p peerProblem
	if self.Segment == "" {
		return p
	}
	for _, h := range sortedHosts(in.Hosts) {
		if h != self && h.Segment == self.Segment && len(h.Blocks) > 0 && h.IP.IsValid() {
			p.peers = append(p.peers, h)
		}
	}
	if len(p.peers) == 0 {
		return p
	}
	gx := indexGroups(in.Groups)
	p.rules = groupSpace(gx, func(g *Group) bool {
		return g.Path == self.Segment || g.Mode == topology.ModeL2 && slices.ContainsFunc(gx.chain(g.Path), func(a *Group) bool { return a.Path == self.Segment })
	})
	index := make(map[*Host]int, len(p.peers))
	for i, h := range p.peers {
		index[h] = i
	}
	p.rules = solvable(append(p.rules, blockRules(in.Hosts, func(h *Host) []int {
		if t, ok := index[h]; ok {
			return []int{t}
		}
		return nil
	})...))
	return p
}
