//go:build linux

package linux

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/terrane-net/terrane/internal/dataplane"
)

const (
	rtnUnicast = 1 // RTN_UNICAST
	// ip6DefaultMetric is the metric the kernel gives an IPv6 route added
	// with none; IPv4 routes keep 0.
	ip6DefaultMetric = 1024
	// dumpRetries bounds re-reads of a table whose dump the kernel
	// interrupted because it changed meanwhile.
	dumpRetries = 5
)

// snapshot is one read of d's table.
type snapshot struct {
	// ours are d's routes in the form Apply writes, normalized and sorted;
	// byRoute maps each back to the kernel route(s) to delete it.
	ours    []dataplane.Route
	byRoute map[dataplane.Route][]netlink.Route
	// odd are d's routes in a form Apply never writes: always removed.
	odd []kernelRoute
	// foreign are destinations held, at the metric Apply writes, by routes
	// of other protocols.
	foreign map[netip.Prefix]bool
	// links are device indexes by name, as far as snapshot learnt them.
	links map[string]int
}

// kernelRoute is a kernel route with its dataplane form.
type kernelRoute struct {
	r  dataplane.Route // for an odd route, a best-effort rendering for the Diff and logs
	nr netlink.Route
}

func (s *snapshot) foreignAt(p netip.Prefix) bool { return s.foreign[p] }

// snapshot lists d's table, IPv4 then IPv6.
func (d *Dataplane) snapshot() (*snapshot, error) {
	snap := &snapshot{byRoute: map[dataplane.Route][]netlink.Route{}, foreign: map[netip.Prefix]bool{}, links: map[string]int{}}
	var all []netlink.Route
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := d.list(family)
		if err != nil {
			return nil, err
		}
		all = append(all, routes...)
	}
	names := d.linkNames(all, snap.links)
	for _, nr := range all {
		r, exact := d.fromNetlink(nr, names)
		if !r.Dst.IsValid() {
			continue // not a unicast IP route we can name
		}
		switch {
		case int(nr.Protocol) != d.protocol:
			if nr.Tos == 0 && nr.Priority == defaultMetric(r.Dst) {
				snap.foreign[r.Dst] = true
			}
		case exact:
			if _, dup := snap.byRoute[r]; !dup {
				snap.ours = append(snap.ours, r)
			}
			snap.byRoute[r] = append(snap.byRoute[r], nr)
		default:
			snap.odd = append(snap.odd, kernelRoute{r, nr})
		}
	}
	return snap, nil
}

// linkDumpAt is how many devices snapshot must not know before it lists
// every link in one dump instead of asking for each by index: a node whose
// hundred pods' veths are all new to it (a start) would otherwise pay a
// hundred round trips.
const linkDumpAt = 8

// linkNamesMaxAge bounds how long a device's name is remembered between
// syncs: a device renamed under a route is seen by then.
const linkNamesMaxAge = 10 * time.Second

// linkNames maps the devices routes name, index to name: remembered from
// earlier syncs (a sync during a burst of pods then looks up only the new
// pods' veths, which toNetlink just wrote routes to), else from one link
// dump when many are unknown; byName gets the dump's reverse, for
// toNetlink. A dump a concurrent change interrupted still holds true pairs:
// an index it lacks is looked up alone by fromNetlink. Devices no route
// names any more are forgotten. d.mu is held.
func (d *Dataplane) linkNames(routes []netlink.Route, byName map[string]int) map[int]string {
	if d.names == nil || time.Since(d.namesAt) > d.namesMaxAge {
		d.names, d.namesAt = map[int]string{}, time.Now()
	}
	routed := map[int]bool{}
	unknown := 0
	for _, nr := range routes {
		if nr.LinkIndex > 0 && !routed[nr.LinkIndex] {
			routed[nr.LinkIndex] = true
			if _, ok := d.names[nr.LinkIndex]; !ok {
				unknown++
			}
		}
	}
	for idx := range d.names {
		if !routed[idx] {
			delete(d.names, idx)
		}
	}
	if unknown < linkDumpAt {
		return d.names
	}
	links, err := d.h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return d.names
	}
	for _, l := range links {
		a := l.Attrs()
		byName[a.Name] = a.Index
		if routed[a.Index] {
			d.names[a.Index] = a.Name
		}
	}
	return d.names
}

// list dumps one family's routes of d's table, re-reading when the kernel
// reports the dump was interrupted by a concurrent change.
func (d *Dataplane) list(family int) ([]netlink.Route, error) {
	filter := &netlink.Route{Table: d.table}
	var err error
	for range dumpRetries {
		var routes []netlink.Route
		routes, err = d.h.RouteListFiltered(family, filter, netlink.RT_FILTER_TABLE)
		if err == nil {
			return routes, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, fmt.Errorf("list routes of table %d: %w", d.table, err)
}

func defaultMetric(dst netip.Prefix) int {
	if dst.Addr().Is6() {
		return ip6DefaultMetric
	}
	return 0
}

// fromNetlink converts a kernel route. exact reports whether the route has
// the form toNetlink writes, so that converting it back loses nothing; the
// returned Dst is invalid when the route is not an IP route at all.
func (d *Dataplane) fromNetlink(nr netlink.Route, names map[int]string) (r dataplane.Route, exact bool) {
	if nr.Dst == nil {
		return r, false
	}
	addr, ok := netip.AddrFromSlice(nr.Dst.IP)
	if !ok {
		return r, false
	}
	mapped := false
	if nr.Family == netlink.FAMILY_V4 {
		addr = addr.Unmap()
	} else {
		mapped = addr.Is4In6() // never written: Normalize would read it as IPv4
	}
	ones, bits := nr.Dst.Mask.Size()
	if bits == 128 && addr.Is4() {
		ones -= 96 // a 16-byte mask on an IPv4 address
	}
	if r.Dst = netip.PrefixFrom(addr, ones).Masked(); !r.Dst.IsValid() {
		return r, false
	}
	exact = true
	if nr.Gw != nil {
		gw, ok := netip.AddrFromSlice(nr.Gw)
		r.Via = gw.Unmap()
		exact = exact && ok
	}
	if nr.LinkIndex > 0 {
		name, ok := names[nr.LinkIndex]
		if !ok {
			if link, err := d.h.LinkByIndex(nr.LinkIndex); err == nil {
				name = link.Attrs().Name
				names[nr.LinkIndex] = name
			}
		}
		r.Dev = name
		exact = exact && name != ""
	}
	switch nr.Scope {
	case netlink.SCOPE_UNIVERSE:
		r.Scope = dataplane.ScopeUniverse
	case netlink.SCOPE_LINK:
		r.Scope = dataplane.ScopeLink
	case netlink.SCOPE_HOST:
		r.Scope = dataplane.ScopeHost
	default:
		exact = false
	}
	exact = exact && !mapped && nr.Type == rtnUnicast && nr.Tos == 0 && nr.Priority == defaultMetric(r.Dst) &&
		len(nr.MultiPath) == 0 && nr.Src == nil && nr.Via == nil && nr.NewDst == nil &&
		nr.Encap == nil && nr.MPLSDst == nil && (r.Via.IsValid() || r.Dev != "")
	return r.Normalize(), exact
}

// toNetlink builds the kernel route for r (normalized) in d's table,
// resolving its device by name (cached in links for one Apply).
func (d *Dataplane) toNetlink(r dataplane.Route, links map[string]int) (*netlink.Route, error) {
	family := netlink.FAMILY_V4
	if r.Dst.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	nr := &netlink.Route{
		Family:   family,
		Dst:      &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), r.Dst.Addr().BitLen())},
		Table:    d.table,
		Protocol: netlink.RouteProtocol(d.protocol),
		Type:     rtnUnicast,
	}
	switch r.Scope {
	case dataplane.ScopeLink:
		nr.Scope = netlink.SCOPE_LINK
	case dataplane.ScopeHost:
		nr.Scope = netlink.SCOPE_HOST
	default:
		nr.Scope = netlink.SCOPE_UNIVERSE
	}
	if r.Via.IsValid() {
		nr.Gw = r.Via.AsSlice()
	}
	if r.Dev != "" {
		idx, ok := links[r.Dev]
		if !ok {
			link, err := d.h.LinkByName(r.Dev)
			if err != nil {
				return nil, fmt.Errorf("device %s: %w", r.Dev, err)
			}
			idx = link.Attrs().Index
			links[r.Dev] = idx
		}
		nr.LinkIndex = idx
	}
	return nr, nil
}
