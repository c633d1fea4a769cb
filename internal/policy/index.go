package policy

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
)

// indexed is one Compile's input arranged for lookups: pods that policy can
// select (not host-network, with an address) by namespace, namespaces'
// labels with the name label, policies by namespace sorted by key, cluster
// policies in the order they are tried; and what this Compile resolved.
type indexed struct {
	cp              *Compiler
	nodePods        []*Pod // the node's selectable pods, by key
	pods            []*Pod
	podsByNS        map[string][]*Pod
	nsLabels        map[string]map[string]string
	policiesByNS    map[string][]*NetworkPolicy
	clusterPolicies []*ClusterNetworkPolicy
	nodes           []NodeInfo
	host            *addrSet // the node's own addresses

	// selections holds each distinct pod or node selection's addresses
	// (under selectionKey), rulePeers each rule's peers, portsNamed the
	// pods' container ports by name, and directions each distinct
	// direction: pods selected by the same policies (with, on ingress, the
	// same container ports, which named ports resolve against) share one.
	selections map[string]*addrSet
	rulePeers  map[ruleRef]*addrSet
	portsNamed map[string][]namedPort
	directions map[string]Direction
	keyBuf     []byte
}

// ruleRef is rule rule of direction t of a NetworkPolicy or a cluster
// policy.
type ruleRef struct {
	policy any
	t      PolicyType
	rule   int
}

type namedPort struct {
	pod  *Pod
	port ContainerPort
}

func (cp *Compiler) index(c *Cluster) *indexed {
	ix := &indexed{
		cp:           cp,
		podsByNS:     map[string][]*Pod{},
		nsLabels:     make(map[string]map[string]string, len(c.Namespaces)),
		policiesByNS: map[string][]*NetworkPolicy{},
		nodes:        c.Nodes,
		selections:   map[string]*addrSet{},
		rulePeers:    map[ruleRef]*addrSet{},
		directions:   map[string]Direction{},
	}
	for _, ns := range c.Namespaces {
		ix.nsLabels[ns.Name] = withName(ns)
	}
	ix.pods = make([]*Pod, 0, len(c.Pods))
	for i := range c.Pods {
		p := &c.Pods[i]
		if p.HostNetwork || len(p.IPs) == 0 {
			continue
		}
		ix.pods = append(ix.pods, p)
		ix.podsByNS[p.Namespace] = append(ix.podsByNS[p.Namespace], p)
		if p.Node == cp.node.Name {
			ix.nodePods = append(ix.nodePods, p)
		}
	}
	for ns := range ix.podsByNS {
		if _, ok := ix.nsLabels[ns]; !ok {
			ix.nsLabels[ns] = withName(Namespace{Name: ns})
		}
	}
	slices.SortStableFunc(ix.nodePods, func(a, b *Pod) int { return cmpKeys(a.Namespace, a.Name, b.Namespace, b.Name) })
	for i := range c.Policies {
		np := &c.Policies[i]
		ix.policiesByNS[np.Metadata.Namespace] = append(ix.policiesByNS[np.Metadata.Namespace], np)
	}
	for _, nps := range ix.policiesByNS {
		slices.SortStableFunc(nps, func(a, b *NetworkPolicy) int { return strings.Compare(a.Metadata.Name, b.Metadata.Name) })
	}
	for i := range c.ClusterPolicies {
		ix.clusterPolicies = append(ix.clusterPolicies, &c.ClusterPolicies[i])
	}
	// Within a tier by priority; equal priorities (whose order the API
	// leaves to the implementation) by name, so the order is stable.
	slices.SortStableFunc(ix.clusterPolicies, func(a, b *ClusterNetworkPolicy) int {
		return cmp.Or(cmp.Compare(a.Spec.Priority, b.Spec.Priority), cmp.Compare(a.Metadata.Name, b.Metadata.Name))
	})
	if len(cp.node.IPs) > 0 {
		ix.host = cp.intern(rangesOfAddrs(slices.Clone(cp.node.IPs)))
	}
	return ix
}

// cmpKeys compares namespace/name keys without building them.
func cmpKeys(ans, aname, bns, bname string) int {
	if ans == bns {
		return strings.Compare(aname, bname)
	}
	n := min(len(ans), len(bns))
	if c := strings.Compare(ans[:n], bns[:n]); c != 0 {
		return c
	}
	return strings.Compare(ans+"/"+aname, bns+"/"+bname) // one namespace is the other's prefix
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
	for _, np := range ix.policiesByNS[p.Namespace] {
		if np.Spec.Affects(t) && np.Spec.PodSelector.Matches(p.Labels) {
			out = append(out, np)
		}
	}
	return out
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

func (ix *indexed) subjectSelects(s *CNPSubject, p *Pod) bool {
	if s.Namespaces != nil {
		return s.Namespaces.Matches(ix.nsLabels[p.Namespace])
	}
	return s.Pods.NamespaceSelector.Matches(ix.nsLabels[p.Namespace]) && s.Pods.PodSelector.Matches(p.Labels)
}

// appendSelectorKey writes a selector so that equal selectors write equal
// bytes (matchLabels sorted; expressions as given).
func appendSelectorKey(b []byte, s *Selector) []byte {
	if s == nil {
		return append(b, '*')
	}
	keys := make([]string, 0, len(s.MatchLabels))
	for k := range s.MatchLabels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = append(append(append(append(b, k...), 0), s.MatchLabels[k]...), 0)
	}
	b = append(b, 1)
	for _, r := range s.MatchExpressions {
		b = append(append(append(append(b, r.Key...), 0), r.Operator...), 0)
		for _, v := range r.Values {
			b = append(append(b, v...), 0)
		}
		b = append(b, 1)
	}
	return append(b, 2)
}

// podSelection is the addresses of the pods podSel selects (nil: all) in
// the namespaces nsSel selects or, when nsSel is nil, in namespace ns.
func (ix *indexed) podSelection(ns string, nsSel, podSel *Selector) *addrSet {
	k := ix.keyBuf[:0]
	if nsSel == nil {
		k = append(append(append(k, 'n'), ns...), 0)
	} else {
		k = appendSelectorKey(append(k, 's'), nsSel)
	}
	k = appendSelectorKey(k, podSel)
	ix.keyBuf = k
	if s, ok := ix.selections[string(k)]; ok {
		return s
	}
	key := string(k)
	var addrs []netip.Addr
	add := func(pods []*Pod) {
		for _, q := range pods {
			if podSel == nil || podSel.Matches(q.Labels) {
				addrs = append(addrs, q.IPs...)
			}
		}
	}
	if nsSel == nil {
		add(ix.podsByNS[ns])
	} else {
		for n, pods := range ix.podsByNS {
			if nsSel.Matches(ix.nsLabels[n]) {
				add(pods)
			}
		}
	}
	s := ix.cp.intern(rangesOfAddrs(addrs))
	ix.selections[key] = s
	return s
}

// nodeSelection is the addresses of the nodes sel selects.
func (ix *indexed) nodeSelection(sel *Selector) *addrSet {
	k := appendSelectorKey(append(ix.keyBuf[:0], 'N'), sel)
	ix.keyBuf = k
	if s, ok := ix.selections[string(k)]; ok {
		return s
	}
	key := string(k)
	var addrs []netip.Addr
	for _, n := range ix.nodes {
		if sel.Matches(n.Labels) {
			addrs = append(addrs, n.IPs...)
		}
	}
	s := ix.cp.intern(rangesOfAddrs(addrs))
	ix.selections[key] = s
	return s
}

// peers is the addresses a NetworkPolicy rule's peers name, for a policy
// of namespace ns.
func (ix *indexed) peers(ref ruleRef, ns string, peers []Peer) *addrSet {
	if s, ok := ix.rulePeers[ref]; ok {
		return s
	}
	var parts []*addrSet
	if len(peers) == 0 {
		parts = append(parts, ix.cp.intern(universeRanges))
	}
	for _, pr := range peers {
		if pr.IPBlock != nil {
			parts = append(parts, ix.cp.intern(ipBlockRanges(pr.IPBlock)))
			continue
		}
		// PodSelector alone: the policy's namespace; with a
		// NamespaceSelector, the namespaces it selects.
		parts = append(parts, ix.podSelection(ns, pr.NamespaceSelector, pr.PodSelector))
	}
	s := ix.cp.union(parts)
	ix.rulePeers[ref] = s
	return s
}

// clusterPeers is the addresses a cluster policy rule's peers name.
func (ix *indexed) clusterPeers(ref ruleRef, peers []CNPPeer) *addrSet {
	if s, ok := ix.rulePeers[ref]; ok {
		return s
	}
	var parts []*addrSet
	for _, pr := range peers {
		switch {
		case pr.Namespaces != nil:
			parts = append(parts, ix.podSelection("", pr.Namespaces, nil))
		case pr.Pods != nil:
			parts = append(parts, ix.podSelection("", &pr.Pods.NamespaceSelector, &pr.Pods.PodSelector))
		case pr.Nodes != nil:
			parts = append(parts, ix.nodeSelection(pr.Nodes))
		default:
			ps := make([]netip.Prefix, 0, len(pr.Networks))
			for _, c := range pr.Networks {
				ps = append(ps, netip.MustParsePrefix(c)) // validated
			}
			parts = append(parts, ix.cp.intern(rangesOfPrefixes(ps)))
		}
	}
	var s *addrSet
	if len(parts) == 0 {
		s = ix.cp.intern(nil)
	} else {
		s = ix.cp.union(parts)
	}
	ix.rulePeers[ref] = s
	return s
}

// namedPortBoxes resolves a named port: on ingress the subject pod's own
// port of that name; on egress each destination pod's, for the pods inside
// peers, one box per protocol and port. proto "" matches a port of any
// protocol (cluster policies' named ports carry none).
func (ix *indexed) namedPortBoxes(p *Pod, t PolicyType, peers *addrSet, name string, proto Protocol) []box {
	var out []box
	if t == Ingress {
		for _, cp := range p.Ports {
			if cp.Name == name && (proto == "" || cp.Proto() == proto) {
				out = append(out, box{cp.Proto(), uint16(cp.Port), uint16(cp.Port), peers})
			}
		}
		return out
	}
	if ix.portsNamed == nil {
		ix.portsNamed = map[string][]namedPort{}
		for _, q := range ix.pods {
			for _, cp := range q.Ports {
				if cp.Name != "" {
					ix.portsNamed[cp.Name] = append(ix.portsNamed[cp.Name], namedPort{q, cp})
				}
			}
		}
	}
	type protoPort struct {
		proto Protocol
		port  uint16
	}
	in := map[protoPort][]netip.Addr{}
	for _, np := range ix.portsNamed[name] {
		if proto != "" && np.port.Proto() != proto {
			continue
		}
		k := protoPort{np.port.Proto(), uint16(np.port.Port)}
		for _, a := range np.pod.IPs {
			if containsAddr(peers.r, a) {
				in[k] = append(in[k], a)
			}
		}
	}
	for k, addrs := range in {
		out = append(out, box{k.proto, k.port, k.port, ix.cp.intern(rangesOfAddrs(addrs))})
	}
	slices.SortFunc(out, func(a, b box) int { return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.first, b.first)) })
	return out
}
