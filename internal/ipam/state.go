package ipam

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// ChangeKind names one kind of state change.
type ChangeKind string

// The state changes an operation can imply. A store persists exactly these,
// each as one compare-and-swap write.
const (
	GroupPrefixAdded   ChangeKind = "group-prefix-added"
	GroupPrefixRemoved ChangeKind = "group-prefix-removed"
	HostJoined         ChangeKind = "host-joined"
	HostUpdated        ChangeKind = "host-updated"
	HostLeft           ChangeKind = "host-left"
	BlockClaimed       ChangeKind = "block-claimed"
	BlockReleased      ChangeKind = "block-released"
	EndpointAdded      ChangeKind = "endpoint-added"
	EndpointReleased   ChangeKind = "endpoint-released"
	// A namespace's default network (Kubernetes: its annotation
	// terrane.io/network) set or cleared; carries Namespace and Network.
	NamespaceNetworkSet     ChangeKind = "namespace-network-set"
	NamespaceNetworkCleared ChangeKind = "namespace-network-cleared"
)

// Change is one state change. Which fields are set depends on Kind:
// group prefixes carry Network, Group and Prefix; blocks carry Network,
// Group, Host and Prefix; endpoints carry Network, Host, Endpoint, Addr,
// Prefix (the block) and Namespace; blocks also carry their Issuer; host changes carry Host, IP, Labels and
// Groups (the leaf group per network), and for HostUpdated the previous
// values in Old.
type Change struct {
	Kind      ChangeKind        `json:"kind"`
	Network   string            `json:"network,omitempty"`
	Group     string            `json:"group,omitempty"`
	Host      string            `json:"host,omitempty"`
	Prefix    netip.Prefix      `json:"prefix,omitzero"`
	Endpoint  string            `json:"endpoint,omitempty"`
	Namespace string            `json:"namespace,omitempty"`
	Addr      netip.Addr        `json:"addr,omitzero"`
	IP        netip.Addr        `json:"ip,omitzero"`
	IP6       netip.Addr        `json:"ip6,omitzero"`
	Labels    map[string]string `json:"labels,omitempty"`
	Groups    map[string]string `json:"groups,omitempty"`
	Old       *HostState        `json:"old,omitempty"`
	// Issuer is who hands out a claimed block's addresses (blocks only).
	Issuer Issuer `json:"issuer,omitempty"`
	// Since is when an endpoint was allocated (endpoints only; the caller's
	// clock: the allocator has none).
	Since time.Time `json:"since,omitzero"`
}

func (c Change) String() string {
	switch c.Kind {
	case GroupPrefixAdded, GroupPrefixRemoved:
		return fmt.Sprintf("%s %s %s %s", c.Kind, c.Network, c.Group, c.Prefix)
	case BlockClaimed, BlockReleased:
		return fmt.Sprintf("%s %s %s by %s in %s", c.Kind, c.Network, c.Prefix, c.Host, c.Group)
	case EndpointAdded, EndpointReleased:
		return fmt.Sprintf("%s %s %s %s on %s", c.Kind, c.Network, c.Endpoint, c.Addr, c.Host)
	case NamespaceNetworkSet, NamespaceNetworkCleared:
		return fmt.Sprintf("%s %s %s", c.Kind, c.Namespace, c.Network)
	default:
		return fmt.Sprintf("%s %s %s", c.Kind, c.Host, c.IP)
	}
}

// HostState is what the allocator knows of a host.
type HostState struct {
	IP     netip.Addr        `json:"ip,omitzero"`
	IP6    netip.Addr        `json:"ip6,omitzero"`
	Labels map[string]string `json:"labels,omitempty"`
	// Groups maps each network to the path of the host's leaf group.
	Groups map[string]string `json:"groups"`
}

// state is the allocation state; apply is its only mutator.
type state struct {
	topo      *topology.Topology
	nets      map[string]*netState
	hosts     map[string]*host
	endpoints map[string]*endpoint
	// members counts the hosts of each leaf group, for placement ties.
	members map[*topology.Group]int
	// nsNetworks is each namespace's own default network.
	nsNetworks map[string]string
}

type netState struct {
	net    *topology.Network
	owned  map[*topology.Group][]netip.Prefix // minimal cover, sorted
	blocks map[netip.Prefix]*block
	// claimed counts the blocks claimed inside each group's prefixes.
	claimed map[*topology.Group]int
	// free caches each group's free space (freelist.go).
	free map[*topology.Group]freeList
	// homes are the groups' home prefixes for the plan mode in use.
	homes map[*topology.Group]netip.Prefix
	// reserved is what no group may own: reservations and service CIDRs
	// inside the network.
	reserved []netip.Prefix
}

type block struct {
	prefix netip.Prefix
	host   string
	group  *topology.Group
	issuer Issuer
	used   []uint64 // one bit per address
	count  int
	// open: new addresses may come from the block (Pool).
	open bool
}

type host struct {
	name   string
	ip     netip.Addr
	ip6    netip.Addr // the host's IPv6 address, when it has one besides ip
	labels map[string]string
	leaf   map[string]*topology.Group         // by network
	blocks map[string]map[netip.Prefix]*block // by network
	// last is the block each network last claimed or used: the next
	// block's buddy is looked for there first.
	last map[string]*block
	// pools are the server's addresses on the host per network: the
	// blocks it issues (VM ports). Blocks the host's agent issues are
	// not in them: the server never allocates there.
	pools map[string]*Pool
}

// pool is the host's server-issued pool in network.
func (h *host) pool(network string) *Pool {
	p := h.pools[network]
	if p == nil {
		p = NewPool()
		h.pools[network] = p
	}
	return p
}

type endpoint struct {
	id, network, host, namespace string
	addr                         netip.Addr
	block                        *block
	since                        time.Time
}

func newState(t *topology.Topology) *state {
	s := &state{topo: t, nets: map[string]*netState{}, hosts: map[string]*host{}, endpoints: map[string]*endpoint{}, members: map[*topology.Group]int{}, nsNetworks: map[string]string{}}
	for _, n := range t.Networks {
		ns := &netState{net: n, owned: map[*topology.Group][]netip.Prefix{}, blocks: map[netip.Prefix]*block{}, claimed: map[*topology.Group]int{}, free: map[*topology.Group]freeList{}}
		for _, r := range slices.Concat(t.Reservations, t.ServiceCIDRs) {
			if r.Overlaps(n.CIDR) {
				ns.reserved = append(ns.reserved, r)
			}
		}
		s.nets[n.Name] = ns
	}
	return s
}

func (s *state) group(network, path string) (*netState, *topology.Group, error) {
	ns := s.nets[network]
	if ns == nil {
		return nil, nil, fmt.Errorf("unknown network %q", network)
	}
	g := ns.net.Tree.Group(path)
	if g == nil {
		return nil, nil, fmt.Errorf("network %q has no group %q", network, path)
	}
	return ns, g, nil
}

// apply performs one change. It checks what it needs to stay consistent and
// refuses a change that does not fit the state, so that replaying a store's
// changes can never corrupt it.
func (s *state) apply(c Change) error {
	switch c.Kind {
	case GroupPrefixAdded, GroupPrefixRemoved:
		ns, g, err := s.group(c.Network, c.Group)
		if err != nil {
			return err
		}
		if c.Kind == GroupPrefixAdded {
			if netx.AnyOverlap(c.Prefix, ns.owned[g]) {
				return fmt.Errorf("group %s already owns part of %s", c.Group, c.Prefix)
			}
			ns.owned[g] = netx.Cover(append(slices.Clone(ns.owned[g]), c.Prefix)...)
			delete(ns.free, g)
		} else {
			// Removing space the group lacks would be undone, on rollback,
			// by adding space it never had; removing space under its blocks
			// would leave them outside their group.
			if !netx.CoveredBy(c.Prefix, ns.owned[g]) {
				return fmt.Errorf("group %s does not own all of %s", c.Group, c.Prefix)
			}
			for p, b := range ns.blocks {
				if b.group == g && p.Overlaps(c.Prefix) {
					return fmt.Errorf("%s holds block %s of group %s", c.Prefix, p, c.Group)
				}
			}
			ns.owned[g] = netx.Subtract(ns.owned[g], c.Prefix)
			delete(ns.free, g)
			if len(ns.owned[g]) == 0 {
				delete(ns.owned, g)
			}
		}
	case HostJoined:
		if s.hosts[c.Host] != nil {
			return fmt.Errorf("host %q already joined", c.Host)
		}
		leaves, err := s.leaves(c.Groups)
		if err != nil {
			return err
		}
		h := &host{name: c.Host, ip: c.IP, ip6: c.IP6, labels: maps.Clone(c.Labels), leaf: leaves, blocks: map[string]map[netip.Prefix]*block{}, last: map[string]*block{}, pools: map[string]*Pool{}}
		for _, g := range leaves {
			s.members[g]++
		}
		s.hosts[c.Host] = h
	case HostUpdated:
		h := s.hosts[c.Host]
		if h == nil {
			return fmt.Errorf("unknown host %q", c.Host)
		}
		// Resolve before touching h: a refused change must change nothing.
		leaves, err := s.leaves(c.Groups)
		if err != nil {
			return err
		}
		for _, g := range h.leaf {
			s.members[g]--
		}
		for _, g := range leaves {
			s.members[g]++
		}
		h.leaf = leaves
		h.ip, h.ip6, h.labels = c.IP, c.IP6, maps.Clone(c.Labels)
		// Server blocks of a group the host has left drain.
		for net, p := range h.pools {
			for _, b := range p.blocks {
				p.setOpen(b, b.group == h.leaf[net])
			}
		}
	case HostLeft:
		h := s.hosts[c.Host]
		if h == nil {
			return fmt.Errorf("unknown host %q", c.Host)
		}
		for _, bs := range h.blocks {
			if len(bs) > 0 {
				return fmt.Errorf("host %q still owns blocks", c.Host)
			}
		}
		for _, g := range h.leaf {
			s.members[g]--
		}
		delete(s.hosts, c.Host)
	case BlockClaimed:
		ns, g, err := s.group(c.Network, c.Group)
		if err != nil {
			return err
		}
		h := s.hosts[c.Host]
		switch {
		case h == nil:
			return fmt.Errorf("unknown host %q", c.Host)
		case ns.blocks[c.Prefix] != nil:
			return fmt.Errorf("block %s is already claimed by %s", c.Prefix, ns.blocks[c.Prefix].host)
		case c.Prefix.Bits() != ns.net.BlockBits:
			return fmt.Errorf("block %s is not a /%d", c.Prefix, ns.net.BlockBits)
		case !netx.CoveredBy(c.Prefix, ns.owned[g]):
			return fmt.Errorf("block %s is outside group %s", c.Prefix, c.Group)
		case netx.AnyOverlap(c.Prefix, ns.reserved):
			return fmt.Errorf("block %s overlaps a reservation", c.Prefix)
		case c.Issuer != IssuerAgent && c.Issuer != IssuerServer:
			return fmt.Errorf("block %s: issuer %q is neither agent nor server", c.Prefix, c.Issuer)
		}
		b := newBlock(c.Prefix)
		b.host, b.group, b.issuer = c.Host, g, c.Issuer
		ns.blocks[c.Prefix] = b
		ns.claimed[g]++
		ns.freeClaimed(g, c.Prefix)
		if h.blocks[c.Network] == nil {
			h.blocks[c.Network] = map[netip.Prefix]*block{}
		}
		h.blocks[c.Network][c.Prefix] = b
		h.last[c.Network] = b
		if b.issuer == IssuerServer {
			h.pool(c.Network).adopt(b, g == h.leaf[c.Network])
		}
	case BlockReleased:
		ns := s.nets[c.Network]
		if ns == nil {
			return fmt.Errorf("unknown network %q", c.Network)
		}
		b := ns.blocks[c.Prefix]
		switch {
		case b == nil:
			return fmt.Errorf("block %s is not claimed", c.Prefix)
		case b.host != c.Host:
			return fmt.Errorf("block %s belongs to %s, not %s", c.Prefix, b.host, c.Host)
		case b.count > 0:
			return fmt.Errorf("block %s still holds %d endpoints", c.Prefix, b.count)
		case c.Issuer != "" && c.Issuer != b.issuer:
			return fmt.Errorf("block %s is issued by the %s, not the %s", c.Prefix, b.issuer, c.Issuer)
		}
		delete(ns.blocks, c.Prefix)
		ns.claimed[b.group]--
		ns.freeReleased(b.group, c.Prefix)
		h := s.hosts[c.Host]
		delete(h.blocks[c.Network], c.Prefix)
		if b.issuer == IssuerServer {
			h.pool(c.Network).Remove(c.Prefix)
		}
		if h.last[c.Network] == b {
			delete(h.last, c.Network)
		}
	case EndpointAdded:
		ns := s.nets[c.Network]
		if ns == nil {
			return fmt.Errorf("unknown network %q", c.Network)
		}
		if s.endpoints[c.Endpoint] != nil {
			return fmt.Errorf("endpoint %q already exists", c.Endpoint)
		}
		b := ns.blocks[c.Prefix]
		switch {
		case b == nil || b.host != c.Host || !c.Prefix.Contains(c.Addr):
			return fmt.Errorf("address %s is not in a block of host %s", c.Addr, c.Host)
		case b.issuer != IssuerServer:
			return fmt.Errorf("address %s is in block %s, which host %s's agent issues, not the server", c.Addr, c.Prefix, c.Host)
		case b.isUsed(c.Addr):
			return fmt.Errorf("address %s is already allocated", c.Addr)
		}
		h := s.hosts[c.Host]
		h.pool(c.Network).take(b, c.Addr)
		h.last[c.Network] = b
		s.endpoints[c.Endpoint] = &endpoint{id: c.Endpoint, network: c.Network, host: c.Host, namespace: c.Namespace, addr: c.Addr, block: b, since: c.Since}
	case EndpointReleased:
		e := s.endpoints[c.Endpoint]
		if e == nil {
			return fmt.Errorf("unknown endpoint %q", c.Endpoint)
		}
		b := e.block
		s.hosts[b.host].pool(e.network).give(b, e.addr)
		delete(s.endpoints, c.Endpoint)
	case NamespaceNetworkSet:
		switch {
		case c.Namespace == "":
			return fmt.Errorf("namespace network: no namespace")
		case s.nsNetworks[c.Namespace] != "":
			return fmt.Errorf("namespace %s already defaults to network %s", c.Namespace, s.nsNetworks[c.Namespace])
		}
		// One network, or a dual-stack pair "v4net,v6net".
		for name := range strings.SplitSeq(c.Network, ",") {
			n := s.topo.Network(name)
			switch {
			case n == nil:
				return fmt.Errorf("unknown network %q", name)
			case !n.Allows(c.Namespace):
				return fmt.Errorf("network %s does not admit namespace %s", name, c.Namespace)
			}
		}
		s.nsNetworks[c.Namespace] = c.Network
	case NamespaceNetworkCleared:
		if got := s.nsNetworks[c.Namespace]; got != c.Network {
			return fmt.Errorf("namespace %s defaults to network %q, not %q", c.Namespace, got, c.Network)
		}
		delete(s.nsNetworks, c.Namespace)
	default:
		return fmt.Errorf("unknown change kind %q", c.Kind)
	}
	return nil
}

// leaves resolves a host's leaf group paths by network.
func (s *state) leaves(groups map[string]string) (map[string]*topology.Group, error) {
	out := make(map[string]*topology.Group, len(groups))
	for net, path := range groups {
		_, g, err := s.group(net, path)
		if err != nil {
			return nil, err
		}
		if !g.IsLeaf() {
			return nil, fmt.Errorf("group %s is not a leaf group", path)
		}
		out[net] = g
	}
	return out, nil
}

// inverse is the change that undoes c.
func (s *state) inverse(c Change) Change {
	inv := c
	switch c.Kind {
	case GroupPrefixAdded:
		inv.Kind = GroupPrefixRemoved
	case GroupPrefixRemoved:
		inv.Kind = GroupPrefixAdded
	case HostJoined:
		inv.Kind = HostLeft
	case HostLeft:
		inv.Kind = HostJoined
	case HostUpdated:
		inv.IP, inv.IP6, inv.Labels, inv.Groups = c.Old.IP, c.Old.IP6, c.Old.Labels, c.Old.Groups
		inv.Old = &HostState{IP: c.IP, IP6: c.IP6, Labels: c.Labels, Groups: c.Groups}
	case BlockClaimed:
		inv.Kind = BlockReleased
	case BlockReleased:
		inv.Kind = BlockClaimed
	case EndpointAdded:
		inv.Kind = EndpointReleased
	case EndpointReleased:
		inv.Kind = EndpointAdded
	case NamespaceNetworkSet:
		inv.Kind = NamespaceNetworkCleared
	case NamespaceNetworkCleared:
		inv.Kind = NamespaceNetworkSet
	}
	return inv
}

// tx records the changes of one operation so that a failed operation can be
// undone whole: nothing partial survives an error.
type tx struct {
	s       *state
	changes []Change
}

func (t *tx) do(c Change) error {
	if err := t.s.apply(c); err != nil {
		return fmt.Errorf("internal error: %s: %w", c, err)
	}
	t.changes = append(t.changes, c)
	return nil
}

func (t *tx) rollback() { t.rollbackTo(0) }

// rollbackTo undoes the changes made since mark (a length of t.changes).
func (t *tx) rollbackTo(mark int) {
	for i := len(t.changes) - 1; i >= mark; i-- {
		if err := t.s.apply(t.s.inverse(t.changes[i])); err != nil {
			panic(fmt.Sprintf("ipam: rollback of %s failed: %v", t.changes[i], err))
		}
	}
	t.changes = t.changes[:mark]
}
