package policy

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// TestCompilerMatchesCompile holds the incremental Compiler to a fresh
// Compile: random clusters (randomCluster's, every feature) go through
// random sequences of changes — pod labels, ports, addresses and nodes
// changed (the label map edited in place, as a caller reusing its maps
// would), pods added and removed, namespaces relabelled, added and
// removed, NetworkPolicies and cluster policies added, removed and
// replaced, node labels changed — and after every step each node's
// Compiler must give the digest Compile gives.
func TestCompilerMatchesCompile(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	steps, changed := 0, 0
	for iter := range 400 {
		c, nodes := randomCluster(r)
		names := slices.Sorted(maps.Keys(nodes))
		comps := map[string]*Compiler{}
		last := map[string]string{}
		for _, n := range names {
			comps[n] = NewCompiler(Node{Name: n, IPs: nodes[n]})
		}
		for step := range 25 {
			what := mutate(r, c, step)
			for _, n := range names {
				node := Node{Name: n, IPs: nodes[n]}
				want, err := Compile(c, node)
				if err != nil {
					t.Fatalf("cluster %d step %d (%s): %v", iter, step, what, err)
				}
				got, err := comps[n].Compile(c)
				if err != nil {
					t.Fatalf("cluster %d step %d (%s): incremental: %v", iter, step, what, err)
				}
				if got.Digest() != want.Digest() {
					t.Fatalf("cluster %d step %d (%s), node %s: the Compiler's rule set differs from Compile's:\n%+v\nwant\n%+v", iter, step, what, n, got, want)
				}
				if d := want.Digest(); d != last[n] {
					changed++
					last[n] = d
				}
				steps++
			}
		}
	}
	t.Logf("%d compiles agree, %d of them changed the rule set", steps, changed)
}

// mutate changes c at random the way a cluster changes, and says how.
func mutate(r *rand.Rand, c *Cluster, step int) string {
	other, _ := randomCluster(r) // a source of random pods, labels and policies
	pickPod := func() *Pod {
		if len(c.Pods) == 0 {
			return nil
		}
		return &c.Pods[r.IntN(len(c.Pods))]
	}
	switch r.IntN(15) {
	case 12:
		// One field of a cluster policy: a rule's action or the priority.
		if len(c.ClusterPolicies) == 0 {
			return "no cluster policy"
		}
		cnp := &c.ClusterPolicies[r.IntN(len(c.ClusterPolicies))]
		actions := []Action{Accept, Deny, Pass}
		switch {
		case r.IntN(3) == 0:
			cnp.Spec.Priority = int32(r.IntN(3))
			return "cluster policy " + cnp.Metadata.Name + " reprioritised"
		case len(cnp.Spec.Ingress) > 0 && r.IntN(2) == 0:
			cnp.Spec.Ingress[r.IntN(len(cnp.Spec.Ingress))].Action = actions[r.IntN(3)]
		case len(cnp.Spec.Egress) > 0:
			cnp.Spec.Egress[r.IntN(len(cnp.Spec.Egress))].Action = actions[r.IntN(3)]
		}
		return "cluster policy " + cnp.Metadata.Name + ": an action changed"
	case 13, 14:
		// One port of a NetworkPolicy rule: its number or its range's end.
		if len(c.Policies) == 0 {
			return "no policy"
		}
		np := &c.Policies[r.IntN(len(c.Policies))]
		var ports []Port
		for _, rule := range np.Spec.Ingress {
			ports = append(ports, rule.Ports...)
		}
		for _, rule := range np.Spec.Egress {
			ports = append(ports, rule.Ports...)
		}
		if len(ports) == 0 {
			return "policy " + np.Key() + " has no port to change"
		}
		p := ports[r.IntN(len(ports))] // shares Port and EndPort with the rule
		switch {
		case p.EndPort != nil:
			*p.EndPort = int32(80 + r.IntN(2))
		case p.Port != nil && !p.Port.String:
			p.Port.Int = int32(79 + r.IntN(3))
		default:
			return "policy " + np.Key() + ": a port without a number"
		}
		return "policy " + np.Key() + ": a port changed"
	case 0, 1:
		p := pickPod()
		if p == nil {
			return "no pod to relabel"
		}
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		// In place: the Compiler must not have kept the map.
		for _, k := range []string{"app", "tier"} {
			switch v := other.Pods[r.IntN(len(other.Pods))].Labels[k]; {
			case v == "":
				delete(p.Labels, k)
			default:
				p.Labels[k] = v
			}
		}
		return "pod " + p.Key() + " relabelled"
	case 2:
		p := pickPod()
		if p == nil {
			return "no pod"
		}
		p.Ports = other.Pods[r.IntN(len(other.Pods))].Ports
		return "pod " + p.Key() + " ports changed"
	case 3:
		p := pickPod()
		if p == nil {
			return "no pod"
		}
		switch r.IntN(4) {
		case 0:
			p.Node = other.Pods[0].Node
		case 1:
			p.IPs = nil // not yet addressed
		case 2:
			p.HostNetwork = !p.HostNetwork
		default:
			p.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(2)), byte(8 + r.IntN(16))})}
		}
		return "pod " + p.Key() + " moved, readdressed or switched host network"
	case 4:
		q := other.Pods[r.IntN(len(other.Pods))]
		q.Name = fmt.Sprintf("q%d", step)
		q.IPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 2, byte(step)})}
		c.Pods = append(c.Pods, q)
		return "pod " + q.Key() + " added"
	case 5:
		if len(c.Pods) == 0 {
			return "no pod to remove"
		}
		i := r.IntN(len(c.Pods))
		key := c.Pods[i].Key()
		c.Pods = slices.Delete(c.Pods, i, i+1)
		return "pod " + key + " removed"
	case 6:
		if len(c.Namespaces) == 0 {
			c.Namespaces = other.Namespaces
			return "namespaces declared again"
		}
		ns := &c.Namespaces[r.IntN(len(c.Namespaces))]
		switch r.IntN(3) {
		case 0:
			ns.Labels = other.Namespaces[0].Labels
		case 1:
			if ns.Labels == nil {
				ns.Labels = map[string]string{}
			}
			ns.Labels["team"] = []string{"a", "b"}[r.IntN(2)] // in place
		default:
			name := ns.Name
			c.Namespaces = slices.DeleteFunc(c.Namespaces, func(n Namespace) bool { return n.Name == name })
			return "namespace " + name + " removed"
		}
		return "namespace " + ns.Name + " relabelled"
	case 7:
		if len(other.Policies) == 0 {
			return "nothing"
		}
		np := other.Policies[0]
		np.Metadata.Name = fmt.Sprintf("new%d", step)
		c.Policies = append(c.Policies, np)
		return "policy " + np.Key() + " added"
	case 8:
		if len(c.Policies) == 0 {
			return "no policy to remove"
		}
		i := r.IntN(len(c.Policies))
		key := c.Policies[i].Key()
		c.Policies = slices.Delete(c.Policies, i, i+1)
		return "policy " + key + " removed"
	case 9:
		if len(c.Policies) == 0 || len(other.Policies) == 0 {
			return "no policy to edit"
		}
		np := &c.Policies[r.IntN(len(c.Policies))]
		np.Spec = other.Policies[0].Spec
		return "policy " + np.Key() + " edited"
	case 10:
		switch {
		case len(other.ClusterPolicies) > 0 && r.IntN(2) == 0:
			cnp := other.ClusterPolicies[0]
			if len(c.ClusterPolicies) > 0 && r.IntN(2) == 0 {
				i := r.IntN(len(c.ClusterPolicies))
				c.ClusterPolicies[i].Spec = cnp.Spec
				return "cluster policy " + c.ClusterPolicies[i].Metadata.Name + " edited"
			}
			cnp.Metadata.Name = fmt.Sprintf("newcnp%d", step)
			c.ClusterPolicies = append(c.ClusterPolicies, cnp)
			return "cluster policy " + cnp.Metadata.Name + " added"
		case len(c.ClusterPolicies) > 0:
			i := r.IntN(len(c.ClusterPolicies))
			name := c.ClusterPolicies[i].Metadata.Name
			c.ClusterPolicies = slices.Delete(c.ClusterPolicies, i, i+1)
			return "cluster policy " + name + " removed"
		}
		return "nothing"
	default:
		n := &c.Nodes[r.IntN(len(c.Nodes))]
		n.Labels = map[string]string{"zone": []string{"a", "b"}[r.IntN(2)]}
		return "node " + n.Name + " relabelled"
	}
}
