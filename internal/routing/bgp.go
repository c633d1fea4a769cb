package routing

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// Advertisements is what a bgp host announces to its ToR: the minimal cover
// of its own blocks (AdvertiseBlocks) or of its leaf group's prefixes
// (AdvertiseGroup). Either way it never covers space owned by someone else.
// A host in another mode announces nothing (nil).
func Advertisements(in Input, host string) ([]netip.Prefix, error) {
	h, err := lookupHost(in.Hosts, host)
	if err == nil {
		var ps []netip.Prefix
		if ps, err = advertised(h, indexGroups(in.Groups)); err == nil {
			return ps, nil
		}
	}
	return nil, fmt.Errorf("advertisements for %q: %w", host, err)
}

func advertised(h *Host, groups groupIndex) ([]netip.Prefix, error) {
	if h.Mode != topology.ModeBGP {
		return nil, nil
	}
	switch h.Advertise {
	case topology.AdvertiseBlocks:
		return netx.Cover(h.Blocks...), nil
	case topology.AdvertiseGroup:
		g := groups[h.Group]
		if g == nil {
			return nil, fmt.Errorf("leaf group %q: %w", h.Group, ErrUnknownGroup)
		}
		return netx.Cover(g.Prefixes...), nil
	}
	return nil, fmt.Errorf("advertise mode %v is not known", h.Advertise)
}

// ToRRoutes is, per bgp leaf group path, the distinct prefixes the group's
// ToR learns from the group's hosts, sorted. Prefixes are deduplicated but
// not merged across hosts: the ToR holds one route per distinct
// announcement. Every leaf group with a bgp host has a key, even when its
// hosts announce nothing yet. A host whose announcement cannot be computed
// (its leaf group is missing) contributes nothing: Advertisements reports
// the error for it.
func ToRRoutes(in Input) map[string][]netip.Prefix {
	groups := indexGroups(in.Groups)
	out := map[string][]netip.Prefix{}
	for i := range in.Hosts {
		h := &in.Hosts[i]
		if h.Mode != topology.ModeBGP {
			continue
		}
		ps, _ := advertised(h, groups)
		out[h.Group] = append(out[h.Group], ps...)
	}
	for g, ps := range out {
		out[g] = slices.Compact(netx.Sort(ps))
	}
	return out
}

// MaxToRRoutes is the leaf group whose ToR learns the most routes, and how
// many. Of equal counts the first path in lexical order wins; with no bgp
// group it returns "", 0.
func MaxToRRoutes(in Input) (group string, n int) {
	tor := ToRRoutes(in)
	for i, g := range slices.Sorted(maps.Keys(tor)) {
		if i == 0 || len(tor[g]) > n {
			group, n = g, len(tor[g])
		}
	}
	return group, n
}
