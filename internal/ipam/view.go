package ipam

import (
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/terrane-net/terrane/internal/netx"
)

// HostInfo is a read-only view of a host.
type HostInfo struct {
	Name string     `json:"name"`
	IP   netip.Addr `json:"ip,omitzero"`
	// IP6 is the host's IPv6 address when it has one besides IP.
	IP6    netip.Addr        `json:"ip6,omitzero"`
	Labels map[string]string `json:"labels,omitempty"`
	// Groups maps each network to the host's leaf group path.
	Groups map[string]string `json:"groups"`
}

// BlockInfo is a read-only view of a block.
type BlockInfo struct {
	Prefix netip.Prefix `json:"prefix"`
	Host   string       `json:"host"`
	Group  string       `json:"group"`
	// Issuer is who hands out the block's addresses: the host's agent
	// (pods) or the server (VM ports).
	Issuer Issuer `json:"issuer"`
	// Used counts the addresses in use: the server's endpoints in its
	// blocks, what the host's agent last reported in its blocks.
	Used int `json:"used"`
	// Endpoints counts the server's endpoints in the block (VM ports).
	Endpoints int `json:"endpoints"`
}

// Hosts lists the hosts by name.
func (a *Allocator) Hosts() []HostInfo {
	out := make([]HostInfo, 0, len(a.s.hosts))
	for _, name := range slices.Sorted(maps.Keys(a.s.hosts)) {
		h := a.s.hosts[name]
		out = append(out, HostInfo{Name: h.name, IP: h.ip, IP6: h.ip6, Labels: maps.Clone(h.labels), Groups: leafPaths(h)})
	}
	return out
}

// Host returns one host.
func (a *Allocator) Host(name string) (HostInfo, bool) {
	h := a.s.hosts[name]
	if h == nil {
		return HostInfo{}, false
	}
	return HostInfo{Name: h.name, IP: h.ip, IP6: h.ip6, Labels: maps.Clone(h.labels), Groups: leafPaths(h)}, true
}

// GroupPrefixes maps each group path to the prefixes it owns in network.
func (a *Allocator) GroupPrefixes(network string) map[string][]netip.Prefix {
	ns := a.s.nets[network]
	if ns == nil {
		return nil
	}
	out := map[string][]netip.Prefix{}
	for g, ps := range ns.owned {
		out[g.Path] = slices.Clone(ps)
	}
	return out
}

// Blocks lists the blocks of network by prefix.
func (a *Allocator) Blocks(network string) []BlockInfo {
	ns := a.s.nets[network]
	if ns == nil {
		return nil
	}
	out := make([]BlockInfo, 0, len(ns.blocks))
	for _, p := range sortedPrefixes(ns.blocks) {
		b := ns.blocks[p]
		out = append(out, a.blockInfo(network, b))
	}
	return out
}

// Endpoints lists every endpoint by ID.
func (a *Allocator) Endpoints() []Endpoint {
	out := make([]Endpoint, 0, len(a.s.endpoints))
	for _, id := range slices.Sorted(maps.Keys(a.s.endpoints)) {
		out = append(out, a.s.endpoints[id].public())
	}
	return out
}

// EndpointsOf lists host's endpoints by ID.
func (a *Allocator) EndpointsOf(host string) []Endpoint {
	var out []Endpoint
	for _, id := range slices.Sorted(maps.Keys(a.s.endpoints)) {
		if e := a.s.endpoints[id]; e.host == host {
			out = append(out, e.public())
		}
	}
	return out
}

// Endpoint returns one endpoint.
func (a *Allocator) Endpoint(id string) (Endpoint, bool) {
	e := a.s.endpoints[id]
	if e == nil {
		return Endpoint{}, false
	}
	return e.public(), true
}

// Usage counts a network's addresses.
type Usage struct {
	// Capacity is every address of the network outside reservations.
	Capacity uint64 `json:"capacity"`
	// Allocated is the number of endpoint addresses handed out.
	Allocated uint64 `json:"allocated"`
	// InBlocks is the number of addresses inside claimed blocks.
	InBlocks uint64 `json:"in_blocks"`
}

// Usage reports how much of network is used.
func (a *Allocator) Usage(network string) Usage {
	ns := a.s.nets[network]
	if ns == nil {
		return Usage{}
	}
	u := Usage{Capacity: netx.TotalSize(netx.Subtract([]netip.Prefix{ns.net.CIDR}, ns.reserved...))}
	for p, b := range ns.blocks {
		u.InBlocks = netx.AddSat(u.InBlocks, netx.Size(p))
		u.Allocated += uint64(b.count + a.reportedIn(network, b))
	}
	return u
}

// GroupUsage reports, for the group at path and everything below it, the
// hosts, blocks and allocated addresses in network.
func (a *Allocator) GroupUsage(network, path string) (hosts, blocks int, allocated uint64) {
	ns := a.s.nets[network]
	if ns == nil {
		return 0, 0, 0
	}
	under := func(p string) bool { return p == path || strings.HasPrefix(p, path+"/") }
	for _, h := range a.s.hosts {
		if g := h.leaf[network]; g != nil && under(g.Path) {
			hosts++
		}
	}
	for _, b := range ns.blocks {
		if under(b.group.Path) {
			blocks++
			allocated += uint64(b.count + a.reportedIn(network, b))
		}
	}
	return hosts, blocks, allocated
}

// GroupPrefixesOf returns the prefixes the group at path owns in network.
func (a *Allocator) GroupPrefixesOf(network, path string) []netip.Prefix {
	ns := a.s.nets[network]
	if ns == nil {
		return nil
	}
	g := ns.net.Tree.Group(path)
	if g == nil {
		return nil
	}
	return slices.Clone(ns.owned[g])
}

// Block returns one block of network.
func (a *Allocator) Block(network string, p netip.Prefix) (BlockInfo, bool) {
	ns := a.s.nets[network]
	if ns == nil {
		return BlockInfo{}, false
	}
	b := ns.blocks[p]
	if b == nil {
		return BlockInfo{}, false
	}
	return a.blockInfo(network, b), true
}

func (a *Allocator) blockInfo(network string, b *block) BlockInfo {
	return BlockInfo{Prefix: b.prefix, Host: b.host, Group: b.group.Path, Issuer: b.issuer, Used: b.count + a.reportedIn(network, b), Endpoints: b.count}
}
