package policy

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

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
			Ingress: ix.direction(p, node, Ingress),
			Egress:  ix.direction(p, node, Egress),
		})
	}
	return rs, nil
}

// indexed is the input arranged for lookups: pods that policy can select
// (not host-network, with an address) sorted by key, namespaces' labels
// with the name label, policies sorted by key.
type indexed struct {
	pods            []*Pod
	podsByNS        map[string][]*Pod
	namespaces      []string // sorted
	nsLabels        map[string]map[string]string
	policies        []*NetworkPolicy
	clusterPolicies []*ClusterNetworkPolicy
	nodes           []NodeInfo
	// peerCache holds each NetworkPolicy rule's resolved peers, and
	// dirCache each distinct direction: pods selected by the same policies
	// (with, on ingress, the same container ports, which named ports
	// resolve against) share one.
	peerCache map[peerKey][]netip.Prefix
	dirCache  map[string]Direction
}

type peerKey struct {
	policy *NetworkPolicy
	t      PolicyType
	rule   int
}

func index(c *Cluster) *indexed {
	ix := &indexed{nsLabels: map[string]map[string]string{}, peerCache: map[peerKey][]netip.Prefix{}, dirCache: map[string]Direction{}}
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
	ix.podsByNS = map[string][]*Pod{}
	for _, p := range ix.pods {
		ix.podsByNS[p.Namespace] = append(ix.podsByNS[p.Namespace], p)
	}
	for ns := range ix.nsLabels {
		ix.namespaces = append(ix.namespaces, ns)
	}
	slices.Sort(ix.namespaces)
	for i := range c.Policies {
		ix.policies = append(ix.policies, &c.Policies[i])
	}
	slices.SortFunc(ix.policies, func(a, b *NetworkPolicy) int { return cmp.Compare(a.Key(), b.Key()) })
	for i := range c.ClusterPolicies {
		ix.clusterPolicies = append(ix.clusterPolicies, &c.ClusterPolicies[i])
	}
	// Within a tier by priority; equal priorities (whose order the API
	// leaves to the implementation) by name, so the order is stable.
	slices.SortFunc(ix.clusterPolicies, func(a, b *ClusterNetworkPolicy) int {
		return cmp.Or(cmp.Compare(a.Spec.Priority, b.Spec.Priority), cmp.Compare(a.Metadata.Name, b.Metadata.Name))
	})
	ix.nodes = c.Nodes
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

// Stages of a direction's decision, in the order they are tried.
const (
	tierHost = iota // the node's own addresses, on ingress
	tierAdmin
	tierNetworkPolicy
	tierBaseline
)

// box is addresses on a protocol class and a port range.
type box struct {
	proto       Protocol // TCP, UDP, SCTP or OtherProtocols
	first, last uint16
	peers       []netip.Prefix
}

func allProtocols(peers []netip.Prefix) []box {
	out := make([]box, 0, len(Protocols))
	for _, p := range Protocols {
		out = append(out, box{p, 0, 65535, peers})
	}
	return out
}

// stage is one rule of a tier (for the NetworkPolicy tier, the union of
// every selecting policy's rules): traffic in its boxes gets its action.
type stage struct {
	tier   int
	action Action
	boxes  []box
}

// direction compiles pod p's ingress or egress: the host's stage, then
// every Admin-tier rule of the cluster policies selecting p (by priority,
// then name, then rule order), the NetworkPolicy tier if a policy selects
// p, every Baseline-tier rule, and at the end accept.
func (ix *indexed) direction(p *Pod, node Node, t PolicyType) Direction {
	pols := ix.selecting(p, t)
	cnpsSel := ix.selectingCluster(p)
	if len(pols)+len(cnpsSel) == 0 {
		return Direction{}
	}
	key := ix.directionKey(p, t, pols, cnpsSel)
	if d, ok := ix.dirCache[key]; ok {
		return d
	}
	d := ix.compileDirection(p, node, t, pols)
	ix.dirCache[key] = d
	return d
}

// directionKey names what a direction's result depends on: the direction,
// the policies selecting the pod and, on ingress, the pod's container ports.
func (ix *indexed) directionKey(p *Pod, t PolicyType, pols []*NetworkPolicy, cnps []*ClusterNetworkPolicy) string {
	var b strings.Builder
	b.WriteString(string(t))
	for _, np := range pols {
		b.WriteString("\x00np:" + np.Key())
	}
	for _, cnp := range cnps {
		b.WriteString("\x00cnp:" + cnp.Metadata.Name)
	}
	if t == Ingress {
		for _, cp := range p.Ports {
			fmt.Fprintf(&b, "\x00port:%s/%s/%d", cp.Name, cp.Proto(), cp.Port)
		}
	}
	return b.String()
}

// selectingCluster are the cluster policies whose subject selects p.
func (ix *indexed) selectingCluster(p *Pod) []*ClusterNetworkPolicy {
	var out []*ClusterNetworkPolicy
	for _, cnp := range ix.clusterPolicies {
		if ix.subjectSelects(&cnp.Spec.Subject, p) {
			out = append(out, cnp)
		}
	}
	return out
}

func (ix *indexed) compileDirection(p *Pod, node Node, t PolicyType, pols []*NetworkPolicy) Direction {
	admin, baseline, cnps := ix.clusterStages(p, t)
	if len(admin)+len(baseline)+len(pols) == 0 {
		return Direction{}
	}
	var stages []stage
	if t == Ingress && len(node.IPs) > 0 {
		var host []netip.Prefix
		for _, ip := range node.IPs {
			host = append(host, netip.PrefixFrom(ip, ip.BitLen()))
		}
		stages = append(stages, stage{tier: tierHost, action: Accept, boxes: allProtocols(host)})
	}
	stages = append(stages, admin...)
	if len(pols) > 0 {
		stages = append(stages, stage{tier: tierNetworkPolicy, action: Accept, boxes: ix.networkPolicyBoxes(p, pols, t)})
	}
	stages = append(stages, baseline...)
	d := decide(stages)
	for _, np := range pols {
		d.Policies = append(d.Policies, np.Key())
	}
	d.ClusterPolicies = cnps
	return d
}

// networkPolicyBoxes is what the policies selecting p admit in direction t.
func (ix *indexed) networkPolicyBoxes(p *Pod, pols []*NetworkPolicy, t PolicyType) []box {
	var out []box
	add := func(key peerKey, ns string, peerList []Peer, ports []Port) {
		peers, ok := ix.peerCache[key]
		if !ok {
			peers = ix.peers(ns, peerList)
			ix.peerCache[key] = peers
		}
		if len(ports) == 0 {
			out = append(out, allProtocols(peers)...)
			return
		}
		for _, port := range ports {
			proto := port.Proto()
			if port.Port != nil && port.Port.String {
				out = append(out, ix.namedPortBoxes(p, t, peers, port.Port.Str, proto)...)
				continue
			}
			first, last := numericRange(port)
			out = append(out, box{proto, first, last, peers})
		}
	}
	for _, np := range pols {
		if t == Ingress {
			for i, r := range np.Spec.Ingress {
				add(peerKey{np, t, i}, np.Metadata.Namespace, r.From, r.Ports)
			}
		} else {
			for i, r := range np.Spec.Egress {
				add(peerKey{np, t, i}, np.Metadata.Namespace, r.To, r.Ports)
			}
		}
	}
	return out
}

// namedPortBoxes resolves a named port: on ingress the subject pod's own
// port of that name; on egress each destination pod's, for the pods inside
// peers. proto "" matches a port of any protocol (cluster policies' named
// ports carry none).
func (ix *indexed) namedPortBoxes(p *Pod, t PolicyType, peers []netip.Prefix, name string, proto Protocol) []box {
	var out []box
	ports := func(q *Pod) []ContainerPort {
		var cps []ContainerPort
		for _, cp := range q.Ports {
			if cp.Name == name && (proto == "" || cp.Proto() == proto) {
				cps = append(cps, cp)
			}
		}
		return cps
	}
	if t == Ingress {
		for _, cp := range ports(p) {
			out = append(out, box{cp.Proto(), uint16(cp.Port), uint16(cp.Port), peers})
		}
		return out
	}
	for _, q := range ix.pods {
		for _, cp := range ports(q) {
			if in := addrsIn(q.IPs, peers); len(in) > 0 {
				out = append(out, box{cp.Proto(), uint16(cp.Port), uint16(cp.Port), in})
			}
		}
	}
	return out
}

// clusterStages are the Admin and Baseline stages of the cluster policies
// selecting p in direction t, and those policies' names.
func (ix *indexed) clusterStages(p *Pod, t PolicyType) (admin, baseline []stage, names []string) {
	for _, cnp := range ix.clusterPolicies {
		if !ix.subjectSelects(&cnp.Spec.Subject, p) {
			continue
		}
		var stages []stage
		tier := tierAdmin
		if cnp.Spec.Tier == BaselineTier {
			tier = tierBaseline
		}
		if t == Ingress {
			for _, r := range cnp.Spec.Ingress {
				stages = append(stages, stage{tier, r.Action, ix.clusterBoxes(p, t, r.From, r.Protocols)})
			}
		} else {
			for _, r := range cnp.Spec.Egress {
				stages = append(stages, stage{tier, r.Action, ix.clusterBoxes(p, t, r.To, r.Protocols)})
			}
		}
		if len(stages) == 0 {
			continue
		}
		names = append(names, cnp.Metadata.Name)
		if tier == tierAdmin {
			admin = append(admin, stages...)
		} else {
			baseline = append(baseline, stages...)
		}
	}
	return admin, baseline, names
}

func (ix *indexed) subjectSelects(s *CNPSubject, p *Pod) bool {
	if s.Namespaces != nil {
		return s.Namespaces.Matches(ix.nsLabels[p.Namespace])
	}
	return s.Pods.NamespaceSelector.Matches(ix.nsLabels[p.Namespace]) && s.Pods.PodSelector.Matches(p.Labels)
}

func (ix *indexed) clusterBoxes(p *Pod, t PolicyType, peerList []CNPPeer, protos []CNPProtocol) []box {
	var peers []netip.Prefix
	for _, pr := range peerList {
		switch {
		case pr.Namespaces != nil, pr.Pods != nil:
			for _, q := range ix.pods {
				if pr.Namespaces != nil && pr.Namespaces.Matches(ix.nsLabels[q.Namespace]) ||
					pr.Pods != nil && pr.Pods.NamespaceSelector.Matches(ix.nsLabels[q.Namespace]) && pr.Pods.PodSelector.Matches(q.Labels) {
					peers = appendAddrs(peers, q.IPs)
				}
			}
		case pr.Nodes != nil:
			for _, n := range ix.nodes {
				if pr.Nodes.Matches(n.Labels) {
					peers = appendAddrs(peers, n.IPs)
				}
			}
		default:
			for _, c := range pr.Networks {
				peers = append(peers, netip.MustParsePrefix(c)) // validated
			}
		}
	}
	if len(protos) == 0 {
		return allProtocols(peers)
	}
	var out []box
	for _, pm := range protos {
		if pm.DestinationNamedPort != "" {
			out = append(out, ix.namedPortBoxes(p, t, peers, pm.DestinationNamedPort, "")...)
			continue
		}
		for _, m := range []struct {
			proto Protocol
			pm    *CNPPortMatch
		}{{TCP, pm.TCP}, {UDP, pm.UDP}, {SCTP, pm.SCTP}} {
			switch {
			case m.pm == nil:
			case m.pm.DestinationPort == nil:
				out = append(out, box{m.proto, 0, 65535, peers})
			case m.pm.DestinationPort.Range != nil:
				r := m.pm.DestinationPort.Range
				out = append(out, box{m.proto, uint16(r.Start), uint16(r.End), peers})
			default:
				n := uint16(m.pm.DestinationPort.Number)
				out = append(out, box{m.proto, n, n, peers})
			}
		}
	}
	return out
}

func appendAddrs(ps []netip.Prefix, addrs []netip.Addr) []netip.Prefix {
	for _, a := range addrs {
		ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
	}
	return ps
}

// universe is every address of both families.
var universe = func() *netipx.IPSet {
	var b netipx.IPSetBuilder
	for _, p := range Everywhere {
		b.AddPrefix(p)
	}
	s, _ := b.IPSet()
	return s
}()

// decide cuts each protocol's port line at every boundary of every box,
// decides each piece for every address (first matching stage, tier by
// tier), and writes the accepted addresses in normal form: what every piece
// accepts in Any, the rest per piece, equal neighbours merged.
func decide(stages []stage) Direction {
	type piece struct {
		proto  Protocol
		lo, hi int
		acc    *netipx.IPSet
	}
	var pieces []piece
	// A piece's decision depends only on which boxes cover it: pieces
	// (of any protocol) covered by the same boxes share one.
	memo := map[string]*netipx.IPSet{}
	for _, proto := range Protocols {
		bounds := []int{0, 65536}
		var boxes []boxRef // of proto, by first port
		for si, st := range stages {
			for bi, b := range st.boxes {
				if b.proto == proto {
					bounds = append(bounds, int(b.first), int(b.last)+1)
					boxes = append(boxes, boxRef{si, bi})
				}
			}
		}
		slices.Sort(bounds)
		bounds = slices.Compact(bounds)
		boxAt := func(r boxRef) *box { return &stages[r.stage].boxes[r.box] }
		slices.SortStableFunc(boxes, func(a, b boxRef) int { return cmp.Compare(boxAt(a).first, boxAt(b).first) })
		// Sweep the pieces in order: a box covers a piece when it starts
		// at or before it and ends at or after it (boxes never cut one).
		var cover []boxRef
		next := 0
		var key []byte
		for i := 0; i+1 < len(bounds); i++ {
			lo, hi := bounds[i], bounds[i+1]-1
			for ; next < len(boxes) && int(boxAt(boxes[next]).first) <= lo; next++ {
				cover = append(cover, boxes[next])
			}
			cover = slices.DeleteFunc(cover, func(r boxRef) bool { return int(boxAt(r).last) < lo })
			sorted := slices.Clone(cover)
			slices.SortFunc(sorted, func(a, b boxRef) int { return cmp.Or(cmp.Compare(a.stage, b.stage), cmp.Compare(a.box, b.box)) })
			key = key[:0]
			for _, r := range sorted {
				key = fmt.Appendf(key, "%d.%d,", r.stage, r.box)
			}
			acc, ok := memo[string(key)]
			if !ok {
				acc = decidePiece(stages, sorted)
				memo[string(key)] = acc
			}
			pieces = append(pieces, piece{proto, lo, hi, acc})
		}
	}
	// Pieces sharing a decision share its set: each distinct set is
	// intersected, and has Any taken out, once.
	var everyB netipx.IPSetBuilder
	everyB.AddSet(universe)
	rest := map[*netipx.IPSet][]netipx.IPRange{}
	for _, pc := range pieces {
		if _, ok := rest[pc.acc]; !ok {
			rest[pc.acc] = nil
			everyB.Intersect(pc.acc)
		}
	}
	every, _ := everyB.IPSet()
	for acc := range rest {
		var b netipx.IPSetBuilder
		b.AddSet(acc)
		b.RemoveSet(every)
		set, _ := b.IPSet()
		rest[acc] = set.Ranges()
	}
	d := Direction{Isolated: true, Any: every.Ranges()}
	for _, pc := range pieces {
		peers := rest[pc.acc]
		if len(peers) == 0 {
			continue
		}
		if n := len(d.Ports); n > 0 {
			prev := &d.Ports[n-1]
			if prev.Protocol == pc.proto && int(prev.Last)+1 == pc.lo && slices.Equal(prev.Peers, peers) {
				prev.Last = uint16(pc.hi)
				continue
			}
		}
		d.Ports = append(d.Ports, PortAllow{Protocol: pc.proto, First: uint16(pc.lo), Last: uint16(pc.hi), Peers: peers})
	}
	return d
}

// boxRef is box box of stage stage.
type boxRef struct{ stage, box int }

// decidePiece is the set of addresses the stages accept on a piece of a
// protocol's port line covered by the boxes cover (sorted by stage).
func decidePiece(stages []stage, cover []boxRef) *netipx.IPSet {
	var final, acc, skip netipx.IPSetBuilder
	tier := -1
	for si, st := range stages {
		if st.tier != tier {
			skip = netipx.IPSetBuilder{} // Pass skips only the rest of its tier
			tier = st.tier
		}
		var m netipx.IPSetBuilder
		for ; len(cover) > 0 && cover[0].stage == si; cover = cover[1:] {
			for _, p := range st.boxes[cover[0].box].peers {
				m.AddPrefix(p)
			}
		}
		finalSet, _ := final.IPSet()
		skipSet, _ := skip.IPSet()
		m.RemoveSet(finalSet)
		m.RemoveSet(skipSet)
		matched, _ := m.IPSet()
		switch {
		case st.tier == tierNetworkPolicy:
			// NetworkPolicy decides all it is asked: what it admits
			// passes, the rest is dropped.
			acc.AddSet(matched)
			final.AddSet(universe)
		case st.action == Accept:
			acc.AddSet(matched)
			final.AddSet(matched)
		case st.action == Deny:
			final.AddSet(matched)
		case st.action == Pass:
			skip.AddSet(matched)
		}
	}
	// Nothing decided: the default, accept.
	finalSet, _ := final.IPSet()
	var rest netipx.IPSetBuilder
	rest.AddSet(universe)
	rest.RemoveSet(finalSet)
	restSet, _ := rest.IPSet()
	acc.AddSet(restSet)
	set, _ := acc.IPSet()
	return set
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

// peers resolves a NetworkPolicy rule's peers, for a policy of namespace
// ns, to addresses.
func (ix *indexed) peers(ns string, peers []Peer) []netip.Prefix {
	if len(peers) == 0 {
		return Everywhere
	}
	var out []netip.Prefix
	for _, pr := range peers {
		if pr.IPBlock != nil {
			var b netipx.IPSetBuilder
			b.AddPrefix(netip.MustParsePrefix(pr.IPBlock.CIDR)) // validated
			for _, e := range pr.IPBlock.Except {
				b.RemovePrefix(netip.MustParsePrefix(e))
			}
			set, _ := b.IPSet()
			out = append(out, set.Prefixes()...)
			continue
		}
		// PodSelector alone: the policy's namespace; with a
		// NamespaceSelector, the namespaces it selects.
		namespaces := []string{ns}
		if pr.NamespaceSelector != nil {
			namespaces = nil
			for _, n := range ix.namespaces {
				if pr.NamespaceSelector.Matches(ix.nsLabels[n]) {
					namespaces = append(namespaces, n)
				}
			}
		}
		for _, n := range namespaces {
			for _, q := range ix.podsByNS[n] {
				if pr.PodSelector == nil || pr.PodSelector.Matches(q.Labels) {
					out = appendAddrs(out, q.IPs)
				}
			}
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
