package lab

import (
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/terrane-net/terrane/internal/dataplane"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// RouterTable is the routing table the lab's routers keep their static
// routes in, looked up by an ip rule before main (the netlink adapter owns
// a table of its own and never touches main).
const RouterTable = 100

// RouterRulePref is the priority of the rule that looks RouterTable up.
const RouterRulePref = 1000

// FabricState is what the fabric's routes depend on: the server's hosts
// (with their leaf group per network), blocks and group prefixes per
// network — the fields of the server's snapshot.
type FabricState struct {
	Hosts  []ipam.HostInfo
	Blocks map[string][]ipam.BlockInfo
	Groups map[string]map[string][]netip.Prefix
}

// RouterRoutes computes every router's static routes (pure): what a rack's
// ToR would carry in a real fabric.
//
//   - Underlay: each other router's segments via that router's spine
//     address, so hosts of different racks reach each other.
//   - A leaf group whose hosts all sit behind one router and route by l2
//     (they carry routes to each other's blocks): the group's prefixes via
//     one host of the group (the first by name) at that router — the host
//     forwards inside the segment — and via that router's spine address at
//     every other router. Growing a group by a block changes nothing here;
//     only a new group prefix does.
//   - Any other group (bgp or vpc hosts, which carry no routes to their
//     peers, or a group spread over several routers): each host's blocks,
//     merged, via the host at its router and via its router elsewhere —
//     what a ToR learns from hosts that advertise their blocks.
//
// t is the applied topology (nil: only the underlay). Hosts behind no
// router are reachable from no router and get no routes. Output routes are
// sorted; there is at most one per destination. A BGP router gets none:
// everything it carries, BIRD learned (bird.go); nor does a VPC router,
// whose table mirrors the fake EC2's (vpc.go).
func RouterRoutes(sc *Scenario, t *topology.Topology, fs FabricState) map[string][]dataplane.Route {
	out := map[string]map[netip.Prefix]dataplane.Route{}
	for _, r := range sc.Routers {
		out[r.Name] = map[netip.Prefix]dataplane.Route{}
	}
	add := func(router string, dst netip.Prefix, via netip.Addr) {
		if r, _ := sc.Router(router); r.BGP != nil || r.VPC != nil {
			return
		}
		if _, ok := out[router][dst]; !ok {
			out[router][dst] = dataplane.Route{Dst: dst, Via: via}
		}
	}
	// announce routes dst at its own router via next, and at every other
	// router via the owner's spine address.
	announce := func(owner Router, dst netip.Prefix, next netip.Addr) {
		for _, r := range sc.Routers {
			if r.Name == owner.Name {
				add(r.Name, dst, next)
			} else {
				add(r.Name, dst, owner.Spine.Addr())
			}
		}
	}
	for _, seg := range sc.Segments {
		if r, ok := sc.Router(seg.Router); ok {
			for _, other := range sc.Routers {
				if other.Name != r.Name {
					add(other.Name, seg.Subnet, r.Spine.Addr())
				}
			}
		}
	}
	if t != nil {
		for _, n := range t.Networks {
			groupRoutes(sc, n, fs, announce)
		}
	}
	res := map[string][]dataplane.Route{}
	for name, m := range out {
		routes := slices.Collect(maps.Values(m))
		slices.SortFunc(routes, dataplane.CompareRoutes)
		res[name] = routes
	}
	return res
}

// groupRoutes announces one network's groups.
func groupRoutes(sc *Scenario, n *topology.Network, fs FabricState, announce func(Router, netip.Prefix, netip.Addr)) {
	byPath := map[string]*topology.Group{}
	for _, g := range n.Tree.All {
		byPath[g.Path] = g
	}
	members := map[string][]Host{} // leaf path → scenario hosts in it
	for _, hi := range fs.Hosts {
		h, ok := sc.Host(hi.Name)
		path := hi.Groups[n.Name]
		if ok && path != "" {
			members[path] = append(members[path], h)
		}
	}
	blocks := map[string][]netip.Prefix{}
	for _, b := range fs.Blocks[n.Name] {
		blocks[b.Host] = append(blocks[b.Host], b.Prefix)
	}
	for _, path := range slices.Sorted(maps.Keys(members)) {
		hosts := members[path]
		slices.SortFunc(hosts, func(a, b Host) int { return strings.Compare(a.Name, b.Name) })
		routers := map[string]bool{}
		for _, h := range hosts {
			r, _ := sc.RouterOf(h.Name)
			routers[r.Name] = true
		}
		g := byPath[path]
		if g != nil && g.Mode == topology.ModeL2 && len(routers) == 1 && !routers[""] {
			owner, _ := sc.RouterOf(hosts[0].Name)
			for _, p := range netx.Cover(fs.Groups[n.Name][path]...) {
				announce(owner, p, hosts[0].IP)
			}
			continue
		}
		for _, h := range hosts {
			owner, ok := sc.RouterOf(h.Name)
			if !ok {
				continue
			}
			for _, p := range netx.Cover(blocks[h.Name]...) {
				announce(owner, p, h.IP)
			}
		}
	}
}
