package policy

import (
	"fmt"
	"net/netip"
	"testing"
)

// bigCluster is 10,000 pods in 50 namespaces on 100 nodes (100 pods each)
// and 1,000 policies: per namespace a default deny, and policies admitting
// an app from another app of the namespace and from a labelled namespace on
// a port, and egress to a CIDR.
func bigCluster() *Cluster {
	c := &Cluster{}
	for n := range 50 {
		c.Namespaces = append(c.Namespaces, Namespace{Name: fmt.Sprintf("ns%d", n), Labels: map[string]string{"team": fmt.Sprint(n % 5)}})
	}
	for i := range 10000 {
		c.Pods = append(c.Pods, Pod{
			Namespace: fmt.Sprintf("ns%d", i%50), Name: fmt.Sprintf("p%d", i), Node: fmt.Sprintf("node%d", i/100),
			Labels: map[string]string{"app": fmt.Sprintf("app%d", i%20), "tier": fmt.Sprint(i % 3)},
			IPs:    []netip.Addr{netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})},
			Ports:  []ContainerPort{{Name: "http", Port: 8080}},
		})
	}
	for i := range 1000 {
		ns := fmt.Sprintf("ns%d", i%50)
		np := NetworkPolicy{Metadata: ObjectMeta{Name: fmt.Sprintf("np%d", i), Namespace: ns}}
		switch i % 4 {
		case 0:
			np.Spec.PolicyTypes = []PolicyType{Ingress, Egress}
		case 1:
			np.Spec.PodSelector = Selector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", i%20)}}
			np.Spec.Ingress = []IngressRule{{
				From:  []Peer{{PodSelector: &Selector{MatchLabels: map[string]string{"app": fmt.Sprintf("app%d", (i+1)%20)}}}},
				Ports: []Port{{Port: &IntOrString{Str: "http", String: true}}},
			}}
		case 2:
			np.Spec.PodSelector = Selector{MatchExpressions: []Requirement{{Key: "tier", Operator: OpIn, Values: []string{"1", "2"}}}}
			np.Spec.Ingress = []IngressRule{{
				From:  []Peer{{NamespaceSelector: &Selector{MatchLabels: map[string]string{"team": fmt.Sprint(i % 5)}}}},
				Ports: []Port{{Port: &IntOrString{Int: int32(9000 + i%100)}}},
			}}
		case 3:
			np.Spec.PolicyTypes = []PolicyType{Egress}
			np.Spec.Egress = []EgressRule{{
				To: []Peer{{IPBlock: &IPBlock{CIDR: fmt.Sprintf("172.%d.0.0/16", 16+i%16), Except: []string{fmt.Sprintf("172.%d.1.0/24", 16+i%16)}}}},
			}}
		}
		c.Policies = append(c.Policies, np)
	}
	return c
}

// BenchmarkCompileFullSync: one node's rule set (100 pods) from 1,000
// policies over 10,000 pods — what an agent compiles on start.
func BenchmarkCompileFullSync(b *testing.B) {
	c := bigCluster()
	node := Node{Name: "node7", IPs: []netip.Addr{netip.MustParseAddr("192.168.0.7")}}
	b.ReportAllocs()
	for b.Loop() {
		rs, err := Compile(c, node)
		if err != nil {
			b.Fatal(err)
		}
		if len(rs.Endpoints) != 100 {
			b.Fatalf("%d endpoints", len(rs.Endpoints))
		}
	}
}
