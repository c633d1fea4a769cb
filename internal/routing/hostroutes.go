package routing

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/terrane-net/terrane/internal/netx"
)

// HostRoutes is the kernel route set of one host: a host route for each of
// its endpoints, and for each L2 peer (another host on the same non-empty
// Segment) the minimal cover of the peer's blocks via the peer's address.
// Hosts off the segment get no route here, whatever their mode: the fabric
// (ToR or cloud table) carries them. Routes are sorted by destination, then
// peer name.
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
	if self.Segment != "" {
		for i := range in.Hosts {
			peer := &in.Hosts[i]
			if peer == self || peer.Segment != self.Segment || len(peer.Blocks) == 0 {
				continue
			}
			if !peer.IP.IsValid() {
				return nil, fmt.Errorf("host routes for %q: peer %q has no address to route via", host, peer.Name)
			}
			for _, p := range netx.Cover(peer.Blocks...) {
				routes = append(routes, Route{Dst: p, Via: peer.IP, Host: peer.Name})
			}
		}
	}
	sortRoutes(routes)
	return routes, nil
}
