package policy

import (
	"cmp"
	"net/netip"
	"slices"

	"go4.org/netipx"
)

// Node is the node a rule set is compiled for.
type Node struct {
	Name string
	// IPs are the node's own addresses: traffic from them to the node's pods
	// (the kubelet's probes) is always admitted.
	IPs []netip.Addr
}

// RuleSet is one node's compiled policy: an entry per pod on the node that
// has an address, sorted by namespace/name.
type RuleSet struct {
	Node      string     `json:"node"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is one pod's rules.
type Endpoint struct {
	// Pod is namespace/name.
	Pod     string       `json:"pod"`
	IPs     []netip.Addr `json:"ips"`
	Ingress Direction    `json:"ingress"`
	Egress  Direction    `json:"egress"`
}

// Direction is what one pod may exchange in one direction. When Isolated is
// false everything passes; otherwise a packet passes when its peer address
// (the source for ingress, the destination for egress) is in Any, or its
// protocol and destination port fall in one of Ports and the peer in that
// entry's Peers. Any and every Peers are sorted, disjoint, non-adjacent
// address ranges (what an nftables interval set holds); the Ports of a
// protocol are disjoint, sorted, hold nothing Any already admits, and
// neighbours with the same peers are merged.
type Direction struct {
	Isolated bool `json:"isolated"`
	// Policies are the namespace/name of the policies that isolate it.
	Policies []string         `json:"policies,omitempty"`
	Any      []netipx.IPRange `json:"any,omitempty"`
	Ports    []PortAllow      `json:"ports,omitempty"`
}

// PortAllow admits Peers on Protocol ports First to Last.
type PortAllow struct {
	Protocol Protocol         `json:"protocol"`
	First    uint16           `json:"first"`
	Last     uint16           `json:"last"`
	Peers    []netipx.IPRange `json:"peers"`
}

// Everywhere is every address of both families: the peers of a rule that
// names none.
var Everywhere = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// Compile validates the input and compiles the rule set of node. Invalid
// input compiles nothing: the error names every bad field, and the caller
// keeps enforcing what it had.
func Compile(c *Cluster, node Node) (*RuleSet, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	ix := index(c)
	rs := &RuleSet{Node: node.Name, Endpoints: []Endpoint{}}
	for _, p := range ix.pods {
		if p.Node != node.Name {
			continue
		}
		rs.Endpoints = append(rs.Endpoints, Endpoint{
			Pod:     p.Key(),
			IPs:     slices.Clone(p.IPs),
			Ingress: ix.ingress(p, node),
			Egress:  ix.egress(p),
		})
	}
	return rs, nil
}

// indexed is the input arranged for lookups: pods that policy can select
// (not host-network, with an address) sorted by key, namespaces' labels
// with the name label, policies sorted by key.
type indexed struct {
	pods     []*Pod
	nsLabels map[string]map[string]string
	policies []*NetworkPolicy
}

func index(c *Cluster) *indexed {
	ix := &indexed{nsLabels: map[string]map[string]string{}}
	for _, ns := range c.Namespaces {
		ix.nsLabels[ns.Name] = withName(ns)
	}
	for i := range c.Pods {
		p := &c.Pods[i]
		if p.HostNetwork || len(p.IPs) == 0 {
			continue
		}
		ix.pods = append(ix.pods, p)
		if _, ok := ix.nsLabels[p.Namespace]; !ok {
			ix.nsLabels[p.Namespace] = withName(Namespace{Name: p.Namespace})
		}
	}
	slices.SortFunc(ix.pods, func(a, b *Pod) int { return cmp.Compare(a.Key(), b.Key()) })
	for i := range c.Policies {
		ix.policies = append(ix.policies, &c.Policies[i])
	}
	slices.SortFunc(ix.policies, func(a, b *NetworkPolicy) int { return cmp.Compare(a.Key(), b.Key()) })
	return ix
}

func withName(ns Namespace) map[string]string {
	l := make(map[string]string, len(ns.Labels)+1)
	for k, v := range ns.Labels {
		l[k] = v
	}
	l[MetadataNameLabel] = ns.Name
	return l
}

// selecting are the policies of p's namespace that select p and isolate t.
func (ix *indexed) selecting(p *Pod, t PolicyType) []*NetworkPolicy {
	var out []*NetworkPolicy
	for _, np := range ix.policies {
		if np.Metadata.Namespace == p.Namespace && np.Spec.Affects(t) && np.Spec.PodSelector.Matches(p.Labels) {
			out = append(out, np)
		}
	}
	return out
}

func (ix *indexed) ingress(p *Pod, node Node) Direction {
	pols := ix.selecting(p, Ingress)
	if len(pols) == 0 {
		return Direction{}
	}
	var acc accumulator
	for _, ip := range node.IPs {
		acc.any = append(acc.any, netip.PrefixFrom(ip, ip.BitLen()))
	}
	for _, np := range pols {
		for _, r := range np.Spec.Ingress {
			peers := ix.peers(np.Metadata.Namespace, r.From)
			if len(r.Ports) == 0 {
				acc.any = append(acc.any, peers...)
				continue
			}
			for _, port := range r.Ports {
				if port.Port != nil && port.Port.String {
					// A named port is the selected pod's own.
					for _, n := range namedPort(p, port.Proto(), port.Port.Str) {
						acc.add(port.Proto(), n, n, peers)
					}
					continue
				}
				first, last := numericRange(port)
				acc.add(port.Proto(), first, last, peers)
			}
		}
	}
	return acc.direction(pols)
}

func (ix *indexed) egress(p *Pod) Direction {
	pols := ix.selecting(p, Egress)
	if len(pols) == 0 {
		return Direction{}
	}
	var acc accumulator
	for _, np := range pols {
		for _, r := range np.Spec.Egress {
			peers := ix.peers(np.Metadata.Namespace, r.To)
			if len(r.Ports) == 0 {
				acc.any = append(acc.any, peers...)
				continue
			}
			for _, port := range r.Ports {
				if port.Port != nil && port.Port.String {
					// A named port is each destination pod's own: only
					// pods inside the rule's peers that name the port.
					for _, q := range ix.pods {
						for _, n := range namedPort(q, port.Proto(), port.Port.Str) {
							acc.add(port.Proto(), n, n, addrsIn(q.IPs, peers))
						}
					}
					continue
				}
				first, last := numericRange(port)
				acc.add(port.Proto(), first, last, peers)
			}
		}
	}
	return acc.direction(pols)
}

// peers resolves a rule's peers, for a policy of namespace ns, to addresses.
func (ix *indexed) peers(ns string, peers []Peer) []netip.Prefix {
	if len(peers) == 0 {
		return Everywhere
	}
	var out []netip.Prefix
	for _, pr := range peers {
		if pr.IPBlock != nil {
			cidr := netip.MustParsePrefix(pr.IPBlock.CIDR) // validated
			var except []netip.Prefix
			for _, e := range pr.IPBlock.Except {
				except = append(except, netip.MustParsePrefix(e))
			}
			var b netipx.IPSetBuilder
			b.AddPrefix(cidr)
			for _, e := range except {
				b.RemovePrefix(e)
			}
			set, _ := b.IPSet()
			out = append(out, set.Prefixes()...)
			continue
		}
		for _, q := range ix.pods {
			if ix.peerSelects(ns, pr, q) {
				for _, a := range q.IPs {
					out = append(out, netip.PrefixFrom(a, a.BitLen()))
				}
			}
		}
	}
	return out
}

// peerSelects reports whether a selector peer of a policy in namespace ns
// selects pod q.
func (ix *indexed) peerSelects(ns string, pr Peer, q *Pod) bool {
	if pr.NamespaceSelector == nil {
		if q.Namespace != ns {
			return false
		}
	} else if !pr.NamespaceSelector.Matches(ix.nsLabels[q.Namespace]) {
		return false
	}
	return pr.PodSelector == nil || pr.PodSelector.Matches(q.Labels)
}

func namedPort(p *Pod, proto Protocol, name string) []uint16 {
	var out []uint16
	for _, cp := range p.Ports {
		if cp.Name == name && cp.Proto() == proto {
			out = append(out, uint16(cp.Port))
		}
	}
	return out
}

func numericRange(p Port) (first, last uint16) {
	switch {
	case p.Port == nil:
		return 0, 65535
	case p.EndPort != nil:
		return uint16(p.Port.Int), uint16(*p.EndPort)
	default:
		return uint16(p.Port.Int), uint16(p.Port.Int)
	}
}

// addrsIn are the single-address prefixes of the addrs inside ps.
func addrsIn(addrs []netip.Addr, ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range addrs {
		for _, p := range ps {
			if p.Contains(a) {
				out = append(out, netip.PrefixFrom(a, a.BitLen()))
				break
			}
		}
	}
	return out
}

// accumulator gathers a direction's admitted (peers, ports) before
// normalising them.
type accumulator struct {
	any     []netip.Prefix
	pending []portPeers
}

type portPeers struct {
	proto       Protocol
	first, last uint16
	peers       []netip.Prefix
}

func (a *accumulator) add(proto Protocol, first, last uint16, peers []netip.Prefix) {
	if len(peers) > 0 {
		a.pending = append(a.pending, portPeers{proto, first, last, peers})
	}
}

// direction normalises: Any as address ranges; per protocol the port
// line cut at every range boundary, each piece admitting the union of the
// ranges over it less Any, empty pieces dropped, equal neighbours merged.
func (a *accumulator) direction(pols []*NetworkPolicy) Direction {
	var anyB netipx.IPSetBuilder
	for _, p := range a.any {
		anyB.AddPrefix(p)
	}
	anySet, _ := anyB.IPSet()
	d := Direction{Isolated: true, Any: anySet.Ranges()}
	for _, np := range pols {
		d.Policies = append(d.Policies, np.Key())
	}
	for _, proto := range Protocols {
		var bounds []int
		for _, pa := range a.pending {
			if pa.proto == proto {
				bounds = append(bounds, int(pa.first), int(pa.last)+1)
			}
		}
		slices.Sort(bounds)
		bounds = slices.Compact(bounds)
		for i := 0; i+1 < len(bounds); i++ {
			lo, hi := bounds[i], bounds[i+1]-1
			var b netipx.IPSetBuilder
			for _, pa := range a.pending {
				if pa.proto == proto && int(pa.first) <= lo && hi <= int(pa.last) {
					for _, p := range pa.peers {
						b.AddPrefix(p)
					}
				}
			}
			b.RemoveSet(anySet)
			set, _ := b.IPSet()
			peers := set.Ranges()
			if len(peers) == 0 {
				continue
			}
			if n := len(d.Ports); n > 0 {
				prev := &d.Ports[n-1]
				if prev.Protocol == proto && int(prev.Last)+1 == lo && slices.Equal(prev.Peers, peers) {
					prev.Last = uint16(hi)
					continue
				}
			}
			d.Ports = append(d.Ports, PortAllow{Protocol: proto, First: uint16(lo), Last: uint16(hi), Peers: peers})
		}
	}
	return d
}

// Allows reports whether the direction admits a packet with the given peer
// address, protocol and destination port. Protocols without ports (ICMP)
// pass only by Any; give them port 0.
func (d *Direction) Allows(peer netip.Addr, proto Protocol, port uint16) bool {
	if !d.Isolated {
		return true
	}
	if inAny(peer, d.Any) {
		return true
	}
	for _, pa := range d.Ports {
		if pa.Protocol == proto && pa.First <= port && port <= pa.Last && inAny(peer, pa.Peers) {
			return true
		}
	}
	return false
}

func inAny(a netip.Addr, rs []netipx.IPRange) bool {
	for _, r := range rs {
		if r.Contains(a) {
			return true
		}
	}
	return false
}

// Endpoint returns the endpoint holding addr.
func (rs *RuleSet) Endpoint(addr netip.Addr) (*Endpoint, bool) {
	for i := range rs.Endpoints {
		if slices.Contains(rs.Endpoints[i].IPs, addr) {
			return &rs.Endpoints[i], true
		}
	}
	return nil, false
}
