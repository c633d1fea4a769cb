package policy

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// oracle decides one packet straight from the API's words, pod by pod and
// rule by rule, with none of the compiler's sets: the reference the compiled
// rule sets are held to.
type oracle struct {
	c     *Cluster
	nodes map[string][]netip.Addr
}

func (o *oracle) podAt(a netip.Addr) *Pod {
	for i := range o.c.Pods {
		p := &o.c.Pods[i]
		if p.HostNetwork {
			continue
		}
		for _, ip := range p.IPs {
			if ip == a {
				return p
			}
		}
	}
	return nil
}

func (o *oracle) nsLabels(name string) map[string]string {
	for _, ns := range o.c.Namespaces {
		if ns.Name == name {
			return withName(ns)
		}
	}
	return withName(Namespace{Name: name})
}

// peerMatches: does peer (of a policy in ns) name address a?
func (o *oracle) peerMatches(ns string, peer Peer, a netip.Addr) bool {
	if peer.IPBlock != nil {
		if !netip.MustParsePrefix(peer.IPBlock.CIDR).Contains(a) {
			return false
		}
		for _, e := range peer.IPBlock.Except {
			if netip.MustParsePrefix(e).Contains(a) {
				return false
			}
		}
		return true
	}
	q := o.podAt(a)
	if q == nil {
		return false
	}
	if peer.NamespaceSelector == nil && q.Namespace != ns {
		return false
	}
	if peer.NamespaceSelector != nil && !peer.NamespaceSelector.Matches(o.nsLabels(q.Namespace)) {
		return false
	}
	return peer.PodSelector == nil || peer.PodSelector.Matches(q.Labels)
}

// portMatches: does a rule's port admit (proto, port) to destination pod dst
// (nil when the destination is not a pod)?
func portMatches(p Port, dst *Pod, proto Protocol, port uint16) bool {
	if p.Proto() != proto {
		return false
	}
	switch {
	case p.Port == nil:
		return true
	case p.Port.String:
		if dst == nil {
			return false
		}
		for _, cp := range dst.Ports {
			if cp.Name == p.Port.Str && cp.Proto() == proto && uint16(cp.Port) == port {
				return true
			}
		}
		return false
	case p.EndPort != nil:
		return uint16(p.Port.Int) <= port && port <= uint16(*p.EndPort)
	default:
		return uint16(p.Port.Int) == port
	}
}

func (o *oracle) ruleMatches(ns string, peers []Peer, ports []Port, peer netip.Addr, dst *Pod, proto Protocol, port uint16) bool {
	peerOK := len(peers) == 0
	for _, pr := range peers {
		peerOK = peerOK || o.peerMatches(ns, pr, peer)
	}
	portOK := len(ports) == 0
	for _, p := range ports {
		portOK = portOK || portMatches(p, dst, proto, port)
	}
	return peerOK && portOK
}

func (o *oracle) nodeLabels(a netip.Addr) (map[string]string, bool) {
	for _, n := range o.c.Nodes {
		for _, ip := range n.IPs {
			if ip == a {
				return n.Labels, true
			}
		}
	}
	return nil, false
}

// cnpPeerMatches: does a cluster policy peer name address a?
func (o *oracle) cnpPeerMatches(pr CNPPeer, a netip.Addr) bool {
	switch {
	case pr.Networks != nil:
		for _, c := range pr.Networks {
			if netip.MustParsePrefix(c).Contains(a) {
				return true
			}
		}
		return false
	case pr.Nodes != nil:
		l, ok := o.nodeLabels(a)
		return ok && pr.Nodes.Matches(l)
	}
	q := o.podAt(a)
	if q == nil {
		return false
	}
	if pr.Namespaces != nil {
		return pr.Namespaces.Matches(o.nsLabels(q.Namespace))
	}
	return pr.Pods.NamespaceSelector.Matches(o.nsLabels(q.Namespace)) && pr.Pods.PodSelector.Matches(q.Labels)
}

func cnpProtoMatches(protos []CNPProtocol, dst *Pod, proto Protocol, port uint16) bool {
	if len(protos) == 0 {
		return true
	}
	for _, p := range protos {
		if p.DestinationNamedPort != "" {
			if dst == nil {
				continue
			}
			for _, cp := range dst.Ports {
				if cp.Name == p.DestinationNamedPort && cp.Proto() == proto && uint16(cp.Port) == port {
					return true
				}
			}
			continue
		}
		for _, m := range []struct {
			proto Protocol
			pm    *CNPPortMatch
		}{{TCP, p.TCP}, {UDP, p.UDP}, {SCTP, p.SCTP}} {
			if m.pm == nil || m.proto != proto {
				continue
			}
			dp := m.pm.DestinationPort
			switch {
			case dp == nil:
				return true
			case dp.Range != nil:
				if uint16(dp.Range.Start) <= port && port <= uint16(dp.Range.End) {
					return true
				}
			case uint16(dp.Number) == port:
				return true
			}
		}
	}
	return false
}

// cnpDecision is the action of the first rule of the tier's cluster
// policies (by priority, then name) that selects subject and matches the
// packet, or "" when none does.
func (o *oracle) cnpDecision(tier Tier, subject *Pod, t PolicyType, peer netip.Addr, dst *Pod, proto Protocol, port uint16) Action {
	var cnps []*ClusterNetworkPolicy
	for i := range o.c.ClusterPolicies {
		if o.c.ClusterPolicies[i].Spec.Tier == tier {
			cnps = append(cnps, &o.c.ClusterPolicies[i])
		}
	}
	slices.SortFunc(cnps, func(a, b *ClusterNetworkPolicy) int {
		return cmp.Or(cmp.Compare(a.Spec.Priority, b.Spec.Priority), cmp.Compare(a.Metadata.Name, b.Metadata.Name))
	})
	for _, cnp := range cnps {
		sub := cnp.Spec.Subject
		if sub.Namespaces != nil && !sub.Namespaces.Matches(o.nsLabels(subject.Namespace)) ||
			sub.Pods != nil && !(sub.Pods.NamespaceSelector.Matches(o.nsLabels(subject.Namespace)) && sub.Pods.PodSelector.Matches(subject.Labels)) {
			continue
		}
		type rule struct {
			action Action
			peers  []CNPPeer
			protos []CNPProtocol
		}
		var rules []rule
		if t == Ingress {
			for _, r := range cnp.Spec.Ingress {
				rules = append(rules, rule{r.Action, r.From, r.Protocols})
			}
		} else {
			for _, r := range cnp.Spec.Egress {
				rules = append(rules, rule{r.Action, r.To, r.Protocols})
			}
		}
		for _, r := range rules {
			peerOK := false
			for _, pr := range r.peers {
				peerOK = peerOK || o.cnpPeerMatches(pr, peer)
			}
			if peerOK && cnpProtoMatches(r.protos, dst, proto, port) {
				return r.action
			}
		}
	}
	return ""
}

// allowed: may src send (proto, port) to dst? proto "ICMP" stands for a
// protocol without ports.
func (o *oracle) allowed(src, dst netip.Addr, proto Protocol, port uint16) bool {
	s, d := o.podAt(src), o.podAt(dst)
	if s != nil && !o.decide(s, Egress, dst, d, proto, port, func() (bool, bool) { return o.npEgress(s, dst, d, proto, port) }) {
		return false
	}
	if d != nil {
		for _, a := range o.nodes[d.Node] {
			if a == src {
				return true
			}
		}
		if !o.decide(d, Ingress, src, d, proto, port, func() (bool, bool) { return o.npIngress(d, src, proto, port) }) {
			return false
		}
	}
	return true
}

// decide runs the tiers for subject: Admin, NetworkPolicy (np tells whether
// any selects the subject and whether one admits the packet), Baseline,
// then accept.
func (o *oracle) decide(subject *Pod, t PolicyType, peer netip.Addr, dst *Pod, proto Protocol, port uint16, np func() (isolated, ok bool)) bool {
	switch o.cnpDecision(AdminTier, subject, t, peer, dst, proto, port) {
	case Accept:
		return true
	case Deny:
		return false
	}
	if isolated, ok := np(); isolated {
		return ok
	}
	return o.cnpDecision(BaselineTier, subject, t, peer, dst, proto, port) != Deny
}

func (o *oracle) npEgress(s *Pod, dst netip.Addr, d *Pod, proto Protocol, port uint16) (isolated, ok bool) {
	for _, np := range o.c.Policies {
		if np.Metadata.Namespace != s.Namespace || !np.Spec.Affects(Egress) || !np.Spec.PodSelector.Matches(s.Labels) {
			continue
		}
		isolated = true
		for _, r := range np.Spec.Egress {
			ok = ok || o.ruleMatches(np.Metadata.Namespace, r.To, r.Ports, dst, d, proto, port)
		}
	}
	return isolated, ok
}

func (o *oracle) npIngress(d *Pod, src netip.Addr, proto Protocol, port uint16) (isolated, ok bool) {
	for _, np := range o.c.Policies {
		if np.Metadata.Namespace != d.Namespace || !np.Spec.Affects(Ingress) || !np.Spec.PodSelector.Matches(d.Labels) {
			continue
		}
		isolated = true
		for _, r := range np.Spec.Ingress {
			ok = ok || o.ruleMatches(np.Metadata.Namespace, r.From, r.Ports, src, d, proto, port)
		}
	}
	return isolated, ok
}

// compiledAllowed decides the same packet with the compiled rule sets: the
// source's node's egress, then the destination's node's ingress.
func compiledAllowed(sets map[string]*RuleSet, o *oracle, src, dst netip.Addr, proto Protocol, port uint16) bool {
	if s := o.podAt(src); s != nil {
		ep, ok := sets[s.Node].Endpoint(src)
		if !ok {
			panic("no endpoint for " + s.Key())
		}
		if !ep.Egress.Allows(dst, proto, port) {
			return false
		}
	}
	if d := o.podAt(dst); d != nil {
		ep, ok := sets[d.Node].Endpoint(dst)
		if !ok {
			panic("no endpoint for " + d.Key())
		}
		if !ep.Ingress.Allows(src, proto, port) {
			return false
		}
	}
	return true
}

// randomCluster builds a small cluster with random labels, named ports and
// policies that use every feature: selectors of both kinds and both forms,
// ipBlocks with excepts over pod addresses, named, numbered and ranged ports
// of two protocols, missing and empty peers and ports, every policyTypes.
func randomCluster(r *rand.Rand) (*Cluster, map[string][]netip.Addr) {
	pick := func(vs ...string) string { return vs[r.IntN(len(vs))] }
	c := &Cluster{}
	for _, ns := range []string{"x", "y", "z"} {
		l := map[string]string{}
		if r.IntN(2) == 0 {
			l["team"] = pick("a", "b")
		}
		c.Namespaces = append(c.Namespaces, Namespace{Name: ns, Labels: l})
	}
	nodes := map[string][]netip.Addr{
		"n1": {netip.MustParseAddr("192.168.0.1")},
		"n2": {netip.MustParseAddr("192.168.0.2")},
	}
	for i := range 7 {
		l := map[string]string{}
		if r.IntN(3) > 0 {
			l["app"] = pick("web", "db", "cache")
		}
		if r.IntN(2) == 0 {
			l["tier"] = pick("1", "2")
		}
		var ports []ContainerPort
		if r.IntN(3) > 0 {
			ports = append(ports, ContainerPort{Name: "serve", Port: int32(pick2(r, 80, 81)), Protocol: Protocol(pick("TCP", "UDP"))})
		}
		p := Pod{
			Namespace: pick("x", "y", "z"), Name: fmt.Sprintf("p%d", i), Labels: l,
			Node: pick("n1", "n2"), Ports: ports,
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(i / 4), byte(10 + i)})},
		}
		c.Pods = append(c.Pods, p)
	}
	sel := func() *Selector {
		s := &Selector{}
		switch r.IntN(5) {
		case 0:
		case 1:
			s.MatchLabels = map[string]string{"app": pick("web", "db")}
		case 2:
			s.MatchExpressions = []Requirement{{Key: "app", Operator: OpIn, Values: []string{pick("web", "db"), "cache"}}}
		case 3:
			s.MatchExpressions = []Requirement{{Key: pick("tier", "app"), Operator: Operator(pick("Exists", "DoesNotExist"))}}
		case 4:
			s.MatchExpressions = []Requirement{{Key: "tier", Operator: OpNotIn, Values: []string{"1"}}}
		}
		return s
	}
	nsSel := func() *Selector {
		switch r.IntN(3) {
		case 0:
			return &Selector{}
		case 1:
			return &Selector{MatchLabels: map[string]string{"team": pick("a", "b")}}
		}
		return &Selector{MatchLabels: map[string]string{MetadataNameLabel: pick("x", "y")}}
	}
	peers := func() []Peer {
		var out []Peer
		for range r.IntN(3) {
			switch r.IntN(4) {
			case 0:
				out = append(out, Peer{PodSelector: sel()})
			case 1:
				out = append(out, Peer{NamespaceSelector: nsSel()})
			case 2:
				out = append(out, Peer{PodSelector: sel(), NamespaceSelector: nsSel()})
			case 3:
				b := &IPBlock{CIDR: pick("10.0.0.0/23", "10.0.0.0/24", "0.0.0.0/0")}
				if r.IntN(2) == 0 {
					b.Except = []string{pick("10.0.0.12/30", "10.0.1.0/24", "10.0.0.10/32")}
					if b.CIDR == "10.0.0.0/24" && b.Except[0] == "10.0.1.0/24" {
						b.Except = nil
					}
				}
				out = append(out, Peer{IPBlock: b})
			}
		}
		return out
	}
	ports := func() []Port {
		var out []Port
		for range r.IntN(3) {
			proto := Protocol(pick("TCP", "UDP"))
			p := Port{Protocol: &proto}
			if r.IntN(4) == 0 {
				p.Protocol = nil
			}
			switch r.IntN(4) {
			case 0:
			case 1:
				p.Port = &IntOrString{Int: int32(pick2(r, 80, 81))}
			case 2:
				p.Port = &IntOrString{Int: 80}
				end := int32(pick2(r, 80, 81))
				p.EndPort = &end
			case 3:
				p.Port = &IntOrString{Str: "serve", String: true}
			}
			out = append(out, p)
		}
		return out
	}
	for i := range 1 + r.IntN(4) {
		np := NetworkPolicy{Metadata: ObjectMeta{Name: fmt.Sprintf("np%d", i), Namespace: pick("x", "y", "z")}}
		np.Spec.PodSelector = *sel()
		switch r.IntN(4) {
		case 1:
			np.Spec.PolicyTypes = []PolicyType{Ingress}
		case 2:
			np.Spec.PolicyTypes = []PolicyType{Egress}
		case 3:
			np.Spec.PolicyTypes = []PolicyType{Ingress, Egress}
		}
		for range r.IntN(3) {
			np.Spec.Ingress = append(np.Spec.Ingress, IngressRule{From: peers(), Ports: ports()})
		}
		for range r.IntN(3) {
			np.Spec.Egress = append(np.Spec.Egress, EgressRule{To: peers(), Ports: ports()})
		}
		c.Policies = append(c.Policies, np)
	}
	c.Nodes = []NodeInfo{
		{Name: "n1", Labels: map[string]string{"zone": "a"}, IPs: nodes["n1"]},
		{Name: "n2", Labels: map[string]string{"zone": "b"}, IPs: nodes["n2"]},
	}
	nsPod := func() *NamespacedPod { return &NamespacedPod{NamespaceSelector: *nsSel(), PodSelector: *sel()} }
	cnpPeers := func(egress bool) (out []CNPPeer, addressPeer bool) {
		for range 1 + r.IntN(2) {
			kinds := 2
			if egress {
				kinds = 4
			}
			switch r.IntN(kinds) {
			case 0:
				out = append(out, CNPPeer{Namespaces: nsSel()})
			case 1:
				out = append(out, CNPPeer{Pods: nsPod()})
			case 2:
				out = append(out, CNPPeer{Nodes: &Selector{MatchLabels: map[string]string{"zone": pick("a", "b")}}})
				addressPeer = true
			case 3:
				out = append(out, CNPPeer{Networks: []string{pick("10.0.0.0/24", "10.0.0.8/29", "8.8.8.0/24", "0.0.0.0/0")}})
				addressPeer = true
			}
		}
		return out, addressPeer
	}
	cnpProtos := func(named bool) []CNPProtocol {
		var out []CNPProtocol
		for range r.IntN(3) {
			m := &CNPPortMatch{}
			switch r.IntN(3) {
			case 1:
				m.DestinationPort = &CNPPort{Number: int32(pick2(r, 80, 81))}
			case 2:
				m.DestinationPort = &CNPPort{Range: &CNPPortRange{Start: 79, End: int32(pick2(r, 80, 81))}}
			}
			switch r.IntN(4) {
			case 0:
				out = append(out, CNPProtocol{TCP: m})
			case 1:
				out = append(out, CNPProtocol{UDP: m})
			case 2:
				out = append(out, CNPProtocol{SCTP: m})
			case 3:
				if named {
					out = append(out, CNPProtocol{DestinationNamedPort: "serve"})
				} else {
					out = append(out, CNPProtocol{TCP: m})
				}
			}
		}
		return out
	}
	action := func() Action { return Action(pick("Accept", "Deny", "Pass")) }
	for i := range r.IntN(4) {
		cnp := ClusterNetworkPolicy{Metadata: ObjectMeta{Name: fmt.Sprintf("cnp%d", i)}}
		cnp.Spec.Tier = Tier(pick("Admin", "Baseline"))
		cnp.Spec.Priority = int32(r.IntN(3))
		if r.IntN(2) == 0 {
			cnp.Spec.Subject.Namespaces = nsSel()
		} else {
			cnp.Spec.Subject.Pods = nsPod()
		}
		for range r.IntN(3) {
			peers, _ := cnpPeers(false)
			cnp.Spec.Ingress = append(cnp.Spec.Ingress, CNPIngressRule{Action: action(), From: peers, Protocols: cnpProtos(true)})
		}
		for range r.IntN(3) {
			peers, addressPeer := cnpPeers(true)
			cnp.Spec.Egress = append(cnp.Spec.Egress, CNPEgressRule{Action: action(), To: peers, Protocols: cnpProtos(!addressPeer)})
		}
		c.ClusterPolicies = append(c.ClusterPolicies, cnp)
	}
	return c, nodes
}

func pick2(r *rand.Rand, a, b int) int {
	if r.IntN(2) == 0 {
		return a
	}
	return b
}

// TestCompiledMatchesOracle holds the compiled rule sets to the oracle on
// thousands of random clusters (NetworkPolicies and cluster policies of both
// tiers with every action), every ordered pair of pods, node and external
// addresses, on the three port protocols, the ports the policies name, the
// ports beside them, a port they do not name, and a protocol without ports.
func TestCompiledMatchesOracle(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	extern := []netip.Addr{netip.MustParseAddr("10.0.1.200"), netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("192.168.0.1"), netip.MustParseAddr("192.168.0.2")}
	checked := 0
	for iter := range 3000 {
		c, nodes := randomCluster(r)
		sets := map[string]*RuleSet{}
		for name, ips := range nodes {
			rs, err := Compile(c, Node{Name: name, IPs: ips})
			if err != nil {
				t.Fatalf("cluster %d: %v", iter, err)
			}
			sets[name] = rs
		}
		o := &oracle{c: c, nodes: nodes}
		var addrs []netip.Addr
		for _, p := range c.Pods {
			addrs = append(addrs, p.IPs...)
		}
		addrs = append(addrs, extern...)
		for _, src := range addrs {
			for _, dst := range addrs {
				if o.podAt(src) == nil && o.podAt(dst) == nil {
					continue
				}
				for _, pp := range []struct {
					proto Protocol
					port  uint16
				}{{TCP, 79}, {TCP, 80}, {TCP, 81}, {TCP, 82}, {UDP, 80}, {UDP, 81}, {UDP, 82}, {TCP, 443}, {SCTP, 80}, {SCTP, 81}, {"ICMP", 0}} {
					want := o.allowed(src, dst, pp.proto, pp.port)
					got := compiledAllowed(sets, o, src, dst, pp.proto, pp.port)
					checked++
					if got != want {
						t.Fatalf("cluster %d: %s -> %s %s/%d: compiled %v, oracle %v\ncluster: %+v\nsets: %+v", iter, src, dst, pp.proto, pp.port, got, want, c, sets)
					}
				}
			}
		}
	}
	t.Logf("%d decisions agree", checked)
}
