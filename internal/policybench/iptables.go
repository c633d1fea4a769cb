package policybench

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/terrane-net/terrane/internal/policy"
)

// Chain names of the iptables-linear rendering.
const (
	iptForward = "TERRANE-BENCH-FWD"
	iptIn      = "TB-IN-"
	iptOut     = "TB-OUT-"
)

// LinearRules renders the NetworkPolicies of the pods on node as iptables
// rules the way kube-router and Calico's iptables dataplane do: a jump from
// FORWARD to one chain that accepts established traffic and sends each
// policed pod's packets to its own chain, where every (peer, port) of every
// rule of every policy selecting the pod is one rule, in policy and rule
// order, followed by a DROP. A packet that opens a connection walks the
// chain until a rule matches: its cost grows with the rules before the one
// that admits it. Egress rules RETURN on a match so the destination's
// ingress chain is still consulted, as in the nftables table.
//
// It renders the shapes the benchmark generates — ipBlocks without
// except, pod selectors by matchLabels in the policy's namespace, numbered
// TCP and UDP ports — and refuses others, naming the field. It returns
// iptables-restore input for the filter table and the number of per-pod
// rules.
func LinearRules(c *policy.Cluster, node string) (string, int, error) {
	if err := c.Validate(); err != nil {
		return "", 0, err
	}
	pols := make([]*policy.NetworkPolicy, len(c.Policies))
	for i := range c.Policies {
		pols[i] = &c.Policies[i]
	}
	slices.SortFunc(pols, func(a, b *policy.NetworkPolicy) int { return cmp.Compare(a.Key(), b.Key()) })
	pods := make([]*policy.Pod, 0, len(c.Pods))
	for i := range c.Pods {
		if c.Pods[i].Node == node && !c.Pods[i].HostNetwork && len(c.Pods[i].IPs) > 0 {
			pods = append(pods, &c.Pods[i])
		}
	}
	slices.SortFunc(pods, func(a, b *policy.Pod) int { return cmp.Compare(a.Key(), b.Key()) })

	var head, body strings.Builder
	head.WriteString("*filter\n:" + iptForward + " - [0:0]\n")
	fmt.Fprintf(&body, "-A FORWARD -j %s\n", iptForward)
	fmt.Fprintf(&body, "-A %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n", iptForward)
	var jumps strings.Builder
	n := 0
	for _, t := range []policy.PolicyType{policy.Egress, policy.Ingress} {
		for _, p := range pods {
			var selecting []*policy.NetworkPolicy
			for _, np := range pols {
				if np.Metadata.Namespace == p.Namespace && np.Spec.Affects(t) && np.Spec.PodSelector.Matches(p.Labels) {
					selecting = append(selecting, np)
				}
			}
			if len(selecting) == 0 {
				continue
			}
			chain, match, verdict, peerFlag := chainName(iptOut, p), "-s", "RETURN", "-d"
			if t == policy.Ingress {
				chain, match, verdict, peerFlag = chainName(iptIn, p), "-d", "ACCEPT", "-s"
			}
			fmt.Fprintf(&head, ":%s - [0:0]\n", chain)
			for _, a := range p.IPs {
				if !a.Is4() {
					return "", 0, fmt.Errorf("pod %s: address %s: the iptables rendering is IPv4 only", p.Key(), a)
				}
				fmt.Fprintf(&jumps, "-A %s %s %s/32 -j %s\n", iptForward, match, a, chain)
			}
			for _, np := range selecting {
				rules, err := linearRules(c, np, t)
				if err != nil {
					return "", 0, err
				}
				for _, r := range rules {
					fmt.Fprintf(&body, "-A %s %s %s -p %s --dport %d -j %s\n", chain, peerFlag, r.peer, strings.ToLower(string(r.proto)), r.port, verdict)
					n++
				}
			}
			fmt.Fprintf(&body, "-A %s -j DROP\n", chain)
		}
	}
	return head.String() + body.String() + jumps.String() + "COMMIT\n", n, nil
}

// chainName is a pod's chain: iptables chain names are at most 28 bytes.
func chainName(prefix string, p *policy.Pod) string {
	name := prefix + p.Namespace + "-" + p.Name
	if len(name) > 28 {
		name = name[:28]
	}
	return name
}

type linearRule struct {
	peer  netip.Prefix
	proto policy.Protocol
	port  int32
}

// linearRules are a policy's rules in direction t, one per peer and port.
func linearRules(c *policy.Cluster, np *policy.NetworkPolicy, t policy.PolicyType) ([]linearRule, error) {
	type rule struct {
		peers []policy.Peer
		ports []policy.Port
	}
	var rules []rule
	field := "ingress"
	if t == policy.Ingress {
		for _, r := range np.Spec.Ingress {
			rules = append(rules, rule{r.From, r.Ports})
		}
	} else {
		field = "egress"
		for _, r := range np.Spec.Egress {
			rules = append(rules, rule{r.To, r.Ports})
		}
	}
	var out []linearRule
	for i, r := range rules {
		path := fmt.Sprintf("policy %s: spec.%s[%d]", np.Key(), field, i)
		if len(r.peers) == 0 || len(r.ports) == 0 {
			return nil, fmt.Errorf("%s: the iptables rendering needs peers and ports on every rule", path)
		}
		var peers []netip.Prefix
		for j, pr := range r.peers {
			switch {
			case pr.IPBlock != nil && len(pr.IPBlock.Except) == 0:
				peers = append(peers, netip.MustParsePrefix(pr.IPBlock.CIDR).Masked()) // validated
			case pr.PodSelector != nil && pr.NamespaceSelector == nil && len(pr.PodSelector.MatchExpressions) == 0:
				for k := range c.Pods {
					q := &c.Pods[k]
					if q.Namespace == np.Metadata.Namespace && !q.HostNetwork && pr.PodSelector.Matches(q.Labels) {
						for _, a := range q.IPs {
							peers = append(peers, netip.PrefixFrom(a, a.BitLen()))
						}
					}
				}
			default:
				return nil, fmt.Errorf("%s.peers[%d]: the iptables rendering takes an ipBlock without except or a podSelector by matchLabels", path, j)
			}
		}
		for _, peer := range peers {
			for j, port := range r.ports {
				proto := port.Proto()
				if port.Port == nil || port.Port.String || port.EndPort != nil || (proto != policy.TCP && proto != policy.UDP) {
					return nil, fmt.Errorf("%s.ports[%d]: the iptables rendering takes a numbered TCP or UDP port", path, j)
				}
				out = append(out, linearRule{peer, proto, port.Port.Int})
			}
		}
	}
	return out, nil
}
