// Package policygen generates synthetic clusters for measuring the policy
// compiler and the dataplanes that enforce its rule sets: the same shapes
// for `go test -bench` in internal/policy and for `terrane bench policy`.
// Like internal/policy it is pure: values in, values out.
package policygen

import (
	"fmt"
	"net/netip"

	"github.com/terrane-net/terrane/internal/policy"
)

// Big cluster's shape.
const (
	BigNamespaces  = 50
	BigPods        = 10000
	BigNodes       = 100
	BigPolicies    = 1000
	BigPodsPerNode = BigPods / BigNodes
)

// BigCluster is 10,000 pods in 50 namespaces on 100 nodes (100 pods each,
// node0 to node99) and 1,000 NetworkPolicies: per namespace a default
// deny, and policies admitting an app from another app of the namespace
// (by named port) and from a labelled namespace on a port, and egress to a
// CIDR with an except. Pod i is ns(i%50)/p<i> on node(i/100) with address
// 10.0.i>>8.i (10.0.0.0/18 for the 10,000).
func BigCluster() *policy.Cluster {
	c := &policy.Cluster{}
	for n := range BigNamespaces {
		c.Namespaces = append(c.Namespaces, policy.Namespace{Name: fmt.Sprintf("ns%d", n), Labels: map[string]string{"team": fmt.Sprint(n % 5)}})
	}
	for i := range BigPods {
		c.Pods = append(c.Pods, policy.Pod{
			Namespace: fmt.Sprintf("ns%d", i%BigNamespaces), Name: fmt.Sprintf("p%d", i), Node: BigNode(i / BigPodsPerNode),
			Labels: map[string]string{"app": fmt.Sprintf("app%d", i%20), "tier": fmt.Sprint(i % 3)},
			IPs:    []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})},
			Ports:  []policy.ContainerPort{{Name: "http", Port: 8080}},
		})
	}
	for i := range BigPolicies {
		ns := fmt.Sprintf("ns%d", i%BigNamespaces)
		np := policy.NetworkPolicy{Metadata: policy.ObjectMeta{Name: fmt.Sprintf("np%d", i), Namespace: ns}}
		switch i % 4 {
		case 0:
			np.Spec.PolicyTypes = []policy.PolicyType{policy.Ingress, policy.Egress}
		case 1:
			np.Spec.PodSelector = policy.Selector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", i%20)}}
			np.Spec.Ingress = []policy.IngressRule{{
				From:  []policy.Peer{{PodSelector: &policy.Selector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", (i+1)%20)}}}},
				Ports: []policy.Port{{Port: &policy.IntOrString{Str: "http", String: true}}},
			}}
		case 2:
			np.Spec.PodSelector = policy.Selector{MatchExpressions: []policy.Requirement{{Key: "tier", Operator: policy.OpIn, Values: []string{"1", "2"}}}}
			np.Spec.Ingress = []policy.IngressRule{{
				From:  []policy.Peer{{NamespaceSelector: &policy.Selector{MatchLabels: map[string]string{"team": fmt.Sprint(i % 5)}}}},
				Ports: []policy.Port{{Port: &policy.IntOrString{Int: int32(9000 + i%100)}}},
			}}
		case 3:
			np.Spec.PolicyTypes = []policy.PolicyType{policy.Egress}
			np.Spec.Egress = []policy.EgressRule{{
				To: []policy.Peer{{IPBlock: &policy.IPBlock{CIDR: fmt.Sprintf("172.%d.0.0/16", 16+i%16), Except: []string{fmt.Sprintf("172.%d.1.0/24", 16+i%16)}}}},
			}}
		}
		c.Policies = append(c.Policies, np)
	}
	return c
}

// BigNode is the name of node n of BigCluster.
func BigNode(n int) string { return fmt.Sprintf("node%d", n) }
