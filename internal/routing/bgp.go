package routing

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// Advertisements is what a bgp host announces to its ToR. With
// `advertise: blocks` (the default) it is the host's share of the smallest
// announcement set of its leaf group (torAnnouncements): the ToR's longest
// match sends every block of the group to its owner, and an aggregate may
// cover the group's free space and a peer's block beside a more specific
// announcement of the peer's. With `advertise: group` it is the minimal
// cover of the leaf group's prefixes: every host of the group announces the
// same set and the ToR spreads over them. Either way no announcement covers
// another group's space or a block of a host outside the group. A host in
// another mode announces nothing (nil).
func Advertisements(in Input, host string) ([]netip.Prefix, error) {
	h, err := lookupHost(in.Hosts, host)
	if err == nil {
		var ps []netip.Prefix
		if ps, err = advertised(in, h, indexGroups(in.Groups)); err == nil {
			return ps, nil
		}
	}
	return nil, fmt.Errorf("advertisements for %q: %w", host, err)
}

func advertised(in Input, h *Host, groups groupIndex) ([]netip.Prefix, error) {
	if h.Mode != topology.ModeBGP {
		return nil, nil
	}
	switch h.Advertise {
	case topology.AdvertiseBlocks:
		return torAnnouncements(in, groups, h.Group).byHost[h], nil
	case topology.AdvertiseGroup:
		g := groups[h.Group]
		if g == nil {
			return nil, fmt.Errorf("leaf group %q: %w", h.Group, ErrUnknownGroup)
		}
		return netx.Cover(g.Prefixes...), nil
	}
	return nil, fmt.Errorf("advertise mode %v is not known", h.Advertise)
}

// torProblem is the announcements of one bgp leaf group's hosts that
// advertise their blocks, as ORTC rules: target i is hosts[i].
type torProblem struct {
	hosts []*Host
	rules []netx.RouteRule
}

// torResult is what each host of the group announces.
type torResult struct {
	byHost map[*Host][]netip.Prefix
}

func newTorProblem(in Input, groups groupIndex, group string) torProblem {
	var p torProblem
	for _, h := range sortedHosts(in.Hosts) {
		if h.Group == group && h.Mode == topology.ModeBGP && h.Advertise == topology.AdvertiseBlocks {
			p.hosts = append(p.hosts, h)
		}
	}
	// The group's own prefixes are free until blocked — unless a host
	// announces them whole (`advertise: group`, which only bad state mixes
	// in): the ToR would spread an announcement equal to theirs over both.
	// Every other prefix must keep the ToR's default (towards the spine).
	whole := slices.ContainsFunc(in.Hosts, func(h Host) bool {
		return h.Group == group && h.Mode == topology.ModeBGP && h.Advertise == topology.AdvertiseGroup
	})
	if g := groups[group]; g != nil && !whole {
		for _, q := range g.Prefixes {
			if q.IsValid() {
				p.rules = append(p.rules, netx.RouteRule{Prefix: q.Masked(), Want: netx.WantAny})
			}
		}
	}
	index := make(map[*Host]int, len(p.hosts))
	for i, h := range p.hosts {
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

// torAnnouncements solves the group's announcements.
func torAnnouncements(in Input, groups groupIndex, group string) torResult {
	p := newTorProblem(in, groups, group)
	res := torResult{byHost: map[*Host][]netip.Prefix{}}
	if len(p.hosts) == 0 {
		return res
	}
	for _, r := range netx.MinimalRoutes(p.rules, false) {
		h := p.hosts[r.Target]
		res.byHost[h] = append(res.byHost[h], r.Prefix)
	}
	return res
}

// ToRRoutes is, per bgp leaf group path, the distinct prefixes the group's
// ToR learns from the group's hosts, sorted: with `advertise: blocks` the
// smallest set that delivers every block of the group to its owner
// (ToROptimum counts it), with `advertise: group` the cover of the group's
// prefixes. Every leaf group with a bgp host has a key, even when its
// hosts announce nothing yet. A host whose announcement cannot be computed
// (its leaf group is missing) contributes nothing: Advertisements reports
// the error for it.
func ToRRoutes(in Input) map[string][]netip.Prefix {
	groups := indexGroups(in.Groups)
	out := map[string][]netip.Prefix{}
	solved := map[string]torResult{}
	for i := range in.Hosts {
		h := &in.Hosts[i]
		if h.Mode != topology.ModeBGP {
			continue
		}
		var ps []netip.Prefix
		if h.Advertise == topology.AdvertiseBlocks {
			res, ok := solved[h.Group]
			if !ok {
				res = torAnnouncements(in, groups, h.Group)
				solved[h.Group] = res
			}
			ps = res.byHost[h]
		} else {
			ps, _ = advertised(in, h, groups)
		}
		out[h.Group] = append(out[h.Group], ps...)
	}
	for g, ps := range out {
		out[g] = slices.Compact(netx.Sort(ps))
	}
	return out
}

// ToROptimum is the fewest routes the ToR of bgp leaf group can learn
// while still reaching every block of the group through a host that
// delivers it — its owner with `advertise: blocks`, any host of the group
// with `advertise: group` — and carrying nothing outside the group. It is
// counted by ORTC's bottom-up pass alone, apart from the route choice
// ToRRoutes makes.
func ToROptimum(in Input, group string) int {
	groups := indexGroups(in.Groups)
	p := newTorProblem(in, groups, group)
	if len(p.hosts) > 0 {
		return netx.MinimalRouteCount(p.rules)
	}
	for _, h := range in.Hosts {
		if h.Group == group && h.Mode == topology.ModeBGP && h.Advertise == topology.AdvertiseGroup {
			if g := groups[group]; g != nil {
				var rs []netx.RouteRule
				for _, q := range g.Prefixes {
					if q.IsValid() {
						rs = append(rs, netx.TargetsRule(q.Masked(), 0, 0))
					}
				}
				return netx.MinimalRouteCount(rs)
			}
		}
	}
	return 0
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

// MaxToROptimum is, over the bgp leaf groups, the largest ToROptimum and
// its group (ties: the first path in lexical order; none: "", 0).
func MaxToROptimum(in Input) (group string, n int) {
	seen := map[string]bool{}
	for _, h := range in.Hosts {
		if h.Mode == topology.ModeBGP {
			seen[h.Group] = true
		}
	}
	for i, g := range slices.Sorted(maps.Keys(seen)) {
		if k := ToROptimum(in, g); i == 0 || k > n {
			group, n = g, k
		}
	}
	return group, n
}
