package routing

import (
	"fmt"
	"net/netip"

	"github.com/terrane-net/terrane/internal/dataplane"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/topology"
)

// HostView is the cluster as one host's agent follows it — the topology
// and a server snapshot's listings — and what lives on the host. It is the
// input of HostState and HostBGP, which compute everything the host
// programs, so an agent is a loop around them.
type HostView struct {
	// Topology is the parsed topology; nil before the agent has one.
	Topology *topology.Topology
	Hosts    []ipam.HostInfo
	// Blocks and Groups are keyed by network (Groups then by group path),
	// as in a snapshot.
	Blocks map[string][]ipam.BlockInfo
	Groups map[string]map[string][]netip.Prefix
	// Host names this host; a view whose Hosts lack it gives no routes.
	Host string
	// Endpoints are the addresses allocated on this host.
	Endpoints []LocalEndpoint
}

// LocalEndpoint is one address on the host, reached through its own
// interface.
type LocalEndpoint struct {
	Network string
	Addr    netip.Addr
	// Dev is the host side of the endpoint's interface (a pod's veth).
	Dev string
}

// HostTable says where a host's routes go.
type HostTable struct {
	// Table is the routing table the routes belong in.
	Table int
	// Gateway is the pods' next hop, answered by proxy ARP on every veth:
	// the host routes it to lo so it is its own. Invalid: no such route.
	Gateway netip.Addr
}

// HostState is the host's whole desired routing table: the gateway's
// route, a route to each local endpoint through its interface, and per
// network the host is in what HostRoutes gives it (its L2 peers' blocks via
// their addresses). A destination has one route: the first (the gateway's,
// then in topology order) wins. A network the host is in no group of contributes
// nothing, not even its local endpoints.
func HostState(v HostView, t HostTable) (dataplane.State, error) {
	st := dataplane.State{Table: t.Table}
	if t.Gateway.IsValid() {
		st.Routes = append(st.Routes, dataplane.Route{Dst: netip.PrefixFrom(t.Gateway, t.Gateway.BitLen()), Dev: "lo", Scope: deviceScope(t.Gateway)})
	}
	self, ok := hostInfo(v.Hosts, v.Host)
	if v.Topology == nil || !ok {
		return st, nil
	}
	local := map[string]map[netip.Addr]string{} // network → address → dev
	for _, e := range v.Endpoints {
		if local[e.Network] == nil {
			local[e.Network] = map[netip.Addr]string{}
		}
		local[e.Network][e.Addr] = e.Dev
	}
	seen := map[netip.Prefix]bool{}
	for _, r := range st.Routes {
		seen[r.Dst] = true
	}
	for _, n := range v.Topology.Networks {
		devs := local[n.Name]
		if self.Groups[n.Name] == "" {
			// Outside every group of n (HostRoutes would not know the
			// host), whatever endpoints it still has there.
			continue
		}
		addrs := make([]netip.Addr, 0, len(devs))
		for a := range devs {
			addrs = append(addrs, a)
		}
		in := InputFrom(n, v.Hosts, v.Blocks[n.Name], v.Groups[n.Name], map[string][]netip.Addr{v.Host: addrs})
		rs, err := HostRoutes(in, v.Host)
		if err != nil {
			return dataplane.State{}, fmt.Errorf("network %s: %w", n.Name, err)
		}
		for _, r := range rs {
			if seen[r.Dst] {
				continue // overlapping networks: the first one wins
			}
			seen[r.Dst] = true
			if r.Local {
				st.Routes = append(st.Routes, dataplane.Route{Dst: r.Dst, Dev: devs[r.Dst.Addr()], Scope: deviceScope(r.Dst.Addr())})
			} else {
				st.Routes = append(st.Routes, dataplane.Route{Dst: r.Dst, Via: r.Via})
			}
		}
	}
	return st, nil
}

// deviceScope is the scope of a route to a on a device: link for IPv4,
// none for IPv6 (which has no route scopes; the dataplane refuses one).
func deviceScope(a netip.Addr) dataplane.Scope {
	if a.Is4() {
		return dataplane.ScopeLink
	}
	return dataplane.ScopeAuto
}

func hostInfo(hosts []ipam.HostInfo, name string) (ipam.HostInfo, bool) {
	for _, h := range hosts {
		if h.Name == name {
			return h, true
		}
	}
	return ipam.HostInfo{}, false
}
