package routing

import (
	"cmp"
	"errors"
	"net/netip"
	"slices"
	"strings"

	"github.com/terrane-net/terrane/internal/netx"
)

// Sentinel errors, for callers that must tell "not registered yet" apart
// from bad state.
var (
	ErrUnknownHost  = errors.New("unknown host")
	ErrUnknownGroup = errors.New("unknown group")
)

// lookupHost finds the host named name. A name given to two hosts is an
// error: routes for an ambiguous host would be a guess.
func lookupHost(hosts []Host, name string) (*Host, error) {
	var found *Host
	for i := range hosts {
		if hosts[i].Name != name {
			continue
		}
		if found != nil {
			return nil, errors.New("host name is used twice")
		}
		found = &hosts[i]
	}
	if found == nil {
		return nil, ErrUnknownHost
	}
	return found, nil
}

// groupIndex finds groups by path. Of two groups with the same path the
// first wins, so the answer does not depend on map order.
type groupIndex map[string]*Group

func indexGroups(gs []Group) groupIndex {
	x := make(groupIndex, len(gs))
	for i := range gs {
		if _, dup := x[gs[i].Path]; !dup {
			x[gs[i].Path] = &gs[i]
		}
	}
	return x
}

// chain is the group at path followed by its ancestors, nearest first. It
// stops at an unknown parent, and at a cycle, which only bad input makes.
func (x groupIndex) chain(path string) []*Group {
	var out []*Group
	for g := x[path]; g != nil && len(out) <= len(x); g = x[g.Parent] {
		if slices.Contains(out, g) {
			break
		}
		out = append(out, g)
	}
	return out
}

// sortRoutes orders kernel routes by destination, then peer name.
func sortRoutes(rs []Route) {
	slices.SortFunc(rs, func(a, b Route) int {
		return cmp.Or(netx.Less(a.Dst, b.Dst), strings.Compare(a.Host, b.Host), a.Via.Compare(b.Via))
	})
}

// hostPrefix is the single-address prefix of a.
func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
