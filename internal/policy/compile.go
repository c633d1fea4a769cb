package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash/maphash"
	"maps"
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
	// Policies are the namespace/name of the NetworkPolicies and
	// ClusterPolicies the names of the cluster policies that decide it.
	Policies        []string         `json:"policies,omitempty"`
	ClusterPolicies []string         `json:"clusterPolicies,omitempty"`
	Any             []netipx.IPRange `json:"any,omitempty"`
	Ports           []PortAllow      `json:"ports,omitempty"`
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
// keeps enforcing what it had. A caller that compiles the same node again
// and again keeps a Compiler instead, which reuses what it decided before.
func Compile(c *Cluster, node Node) (*RuleSet, error) {
	return NewCompiler(node).Compile(c)
}

// Compiler compiles one node's rule set, again at every change of the
// cluster, and decides again only the directions whose input changed: a
// direction's decision is kept under its stages' content (which address
// sets, on which ports, with which actions, in which order), so a direction
// whose stages come out the same reuses it. Each Compile still validates
// and indexes its whole input and resolves the selectors, which costs a
// small part of a full compile. What Compile returns equals what the
// package's Compile returns for the same input, byte for byte.
//
// A Compiler keeps nothing of the Cluster it was given (the caller may
// change it afterwards); its memory is what the last Compile used. The
// rule sets it returns share address slices with each other and with the
// Compiler: treat them as read-only. It is not safe for concurrent use.
type Compiler struct {
	node Node
	// gen counts Compile calls; what a call does not use is dropped at its
	// end.
	gen    uint64
	seed   maphash.Seed
	nextID uint64
	// sets interns address sets by content (under a hash), so equal
	// content has one id; unions are kept under their operands' ids.
	sets   map[uint64][]*addrSet
	unions map[string]*addrSet
	// decided holds each distinct direction's decision under its stages'
	// content.
	decided map[string]*decision
}

// addrSet is an address set in normal form with an id that names its
// content within one Compiler.
type addrSet struct {
	id  uint64
	r   []netipx.IPRange
	gen uint64
}

type decision struct {
	d   Direction
	gen uint64
}

// NewCompiler is a compiler of node's rule set.
func NewCompiler(node Node) *Compiler {
	node.IPs = slices.Clone(node.IPs)
	return &Compiler{
		node:    node,
		seed:    maphash.MakeSeed(),
		sets:    map[uint64][]*addrSet{},
		unions:  map[string]*addrSet{},
		decided: map[string]*decision{},
	}
}

// Compile validates c and compiles the node's rule set from it, as the
// package's Compile does.
func (cp *Compiler) Compile(c *Cluster) (*RuleSet, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	cp.gen++
	ix := cp.index(c)
	rs := &RuleSet{Node: cp.node.Name, Endpoints: make([]Endpoint, 0, len(ix.nodePods))}
	for _, p := range ix.nodePods {
		rs.Endpoints = append(rs.Endpoints, Endpoint{
			Pod:     p.Key(),
			IPs:     slices.Clone(p.IPs),
			Ingress: ix.direction(p, Ingress),
			Egress:  ix.direction(p, Egress),
		})
	}
	cp.drop()
	return rs, nil
}

// drop forgets the sets and decisions the last Compile did not use.
func (cp *Compiler) drop() {
	for h, sets := range cp.sets {
		sets = slices.DeleteFunc(sets, func(s *addrSet) bool { return s.gen != cp.gen })
		if len(sets) == 0 {
			delete(cp.sets, h)
		} else {
			cp.sets[h] = sets
		}
	}
	maps.DeleteFunc(cp.unions, func(_ string, s *addrSet) bool { return s.gen != cp.gen })
	maps.DeleteFunc(cp.decided, func(_ string, d *decision) bool { return d.gen != cp.gen })
}

// intern is the set holding r's addresses (r in normal form, owned by the
// caller no more).
func (cp *Compiler) intern(r []netipx.IPRange) *addrSet {
	var h maphash.Hash
	h.SetSeed(cp.seed)
	var b [33]byte
	for _, x := range r {
		f, t := x.From().As16(), x.To().As16()
		copy(b[:16], f[:])
		copy(b[16:32], t[:])
		b[32] = byte(x.From().BitLen())
		h.Write(b[:])
	}
	sum := h.Sum64()
	for _, s := range cp.sets[sum] {
		if slices.Equal(s.r, r) {
			s.gen = cp.gen
			return s
		}
	}
	cp.nextID++
	s := &addrSet{id: cp.nextID, r: r, gen: cp.gen}
	cp.sets[sum] = append(cp.sets[sum], s)
	return s
}

// union is the union of sets, kept under their ids.
func (cp *Compiler) union(sets []*addrSet) *addrSet {
	if len(sets) == 1 {
		return sets[0]
	}
	key := make([]byte, 0, 8*len(sets))
	for _, s := range sets {
		key = binary.AppendUvarint(key, s.id)
	}
	if u, ok := cp.unions[string(key)]; ok {
		u.gen = cp.gen
		return u
	}
	rs := make([][]netipx.IPRange, len(sets))
	for i, s := range sets {
		rs[i] = s.r
	}
	cp.nextID++
	u := &addrSet{id: cp.nextID, r: unionRanges(rs...), gen: cp.gen}
	cp.unions[string(key)] = u
	return u
}

// decide is the decision of stages: the one kept under their content, or
// a new one.
func (cp *Compiler) decide(stages []stage) Direction {
	var key []byte
	for _, st := range stages {
		key = append(key, byte(st.tier))
		key = append(key, st.action...)
		key = binary.AppendUvarint(append(key, 0), uint64(len(st.boxes)))
		for _, b := range st.boxes {
			key = append(key, b.proto...)
			key = append(key, 0, byte(b.first>>8), byte(b.first), byte(b.last>>8), byte(b.last))
			key = binary.AppendUvarint(key, b.peers.id)
		}
	}
	if d, ok := cp.decided[string(key)]; ok {
		d.gen = cp.gen
		return d.d
	}
	d := decide(stages)
	cp.decided[string(key)] = &decision{d: d, gen: cp.gen}
	return d
}

// Allows reports whether the direction admits a packet with the given peer
// address, protocol and destination port. Any protocol but TCP, UDP and
// SCTP (ICMP, say) is OtherProtocols, whatever port it is given.
func (d *Direction) Allows(peer netip.Addr, proto Protocol, port uint16) bool {
	if !d.Isolated {
		return true
	}
	if proto != TCP && proto != UDP && proto != SCTP {
		proto, port = OtherProtocols, 0
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

// Digest names a rule set's content: equal rule sets, equal digests. An
// agent publishes the digest of what it applied, so a caller that compiled
// the same input can tell when the node enforces it.
func (rs *RuleSet) Digest() string {
	b, err := json.Marshal(rs)
	if err != nil {
		panic(err) // a rule set is plain data
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
