package policygen

import (
	"fmt"
	"net/netip"

	"github.com/terrane-net/terrane/internal/policy"
)

// Pair's names: one namespace on one node, a client pod and a server pod.
const (
	PairNamespace = "bench"
	PairNode      = "bench"
	PairClient    = "client"
	PairServer    = "server"
	// PairRulesPerPolicy is how many rules each generated policy holds.
	PairRulesPerPolicy = 10
	// MaxPairRules bounds rules per direction: one decoy address each in
	// 10.200.0.0/16.
	MaxPairRules = 1 << 16
)

// PairDecoy is the peer address of rule k of a Pair direction that does
// not admit the pair: 10.200.0.0/16, k-th address.
func PairDecoy(k int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 200, byte(k >> 8), byte(k)})
}

// PairDecoyPort is the TCP port of rule k's decoy: 20000 + k%40000, so
// every rule names its own (peer, port) up to 40,000 rules.
func PairDecoyPort(k int) int32 { return int32(20000 + k%40000) }

// Pair is a client and a server pod on one node and rules rules in each
// direction that concerns them: the server's ingress and the client's
// egress, each in policies of PairRulesPerPolicy rules named so their keys
// sort in rule order. Rules 0 to rules-2 admit a decoy address
// (PairDecoy(k)) on a port of their own (PairDecoyPort(k)); the last rule
// admits the pair, by pod selector, on ports. Every rule is real: each
// adds its own (peer, port) to what the direction admits, and the one
// that admits the pair comes last.
func Pair(rules int, client, server netip.Addr, ports ...int32) (*policy.Cluster, error) {
	if rules < 1 || rules > MaxPairRules {
		return nil, fmt.Errorf("rules %d: want 1 to %d", rules, MaxPairRules)
	}
	if len(ports) == 0 {
		return nil, fmt.Errorf("ports: name at least one port the pair talks on")
	}
	c := &policy.Cluster{
		Namespaces: []policy.Namespace{{Name: PairNamespace}},
		Pods: []policy.Pod{
			{Namespace: PairNamespace, Name: PairClient, Node: PairNode, Labels: map[string]string{"role": PairClient}, IPs: []netip.Addr{client}},
			{Namespace: PairNamespace, Name: PairServer, Node: PairNode, Labels: map[string]string{"role": PairServer}, IPs: []netip.Addr{server}},
		},
	}
	var admit []policy.Port
	for _, p := range ports {
		admit = append(admit, policy.Port{Port: &policy.IntOrString{Int: p}})
	}
	role := func(r string) *policy.Selector { return &policy.Selector{MatchLabels: map[string]string{"role": r}} }
	width := len(fmt.Sprint((rules - 1) / PairRulesPerPolicy))
	for _, dir := range []policy.PolicyType{policy.Ingress, policy.Egress} {
		subject, peer, prefix := PairServer, PairClient, "server-in-"
		if dir == policy.Egress {
			subject, peer, prefix = PairClient, PairServer, "client-out-"
		}
		var np *policy.NetworkPolicy
		for k := range rules {
			if k%PairRulesPerPolicy == 0 {
				c.Policies = append(c.Policies, policy.NetworkPolicy{
					Metadata: policy.ObjectMeta{Namespace: PairNamespace, Name: fmt.Sprintf("%s%0*d", prefix, width, k/PairRulesPerPolicy)},
					Spec:     policy.NetworkPolicySpec{PodSelector: *role(subject), PolicyTypes: []policy.PolicyType{dir}},
				})
				np = &c.Policies[len(c.Policies)-1]
			}
			peers := []policy.Peer{{IPBlock: &policy.IPBlock{CIDR: netip.PrefixFrom(PairDecoy(k), 32).String()}}}
			rulePorts := []policy.Port{{Port: &policy.IntOrString{Int: PairDecoyPort(k)}}}
			if k == rules-1 {
				peers, rulePorts = []policy.Peer{{PodSelector: role(peer)}}, admit
			}
			if dir == policy.Ingress {
				np.Spec.Ingress = append(np.Spec.Ingress, policy.IngressRule{From: peers, Ports: rulePorts})
			} else {
				np.Spec.Egress = append(np.Spec.Egress, policy.EgressRule{To: peers, Ports: rulePorts})
			}
		}
	}
	return c, nil
}
