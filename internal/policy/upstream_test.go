package policy_test

import (
	"encoding/json"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"

	"github.com/terrane-net/terrane/internal/policy"
)

// TestMatchesCyclonus holds the compiler to an engine it shares no code
// with: cyclonus's policy matcher (github.com/mattfenwick/cyclonus, the
// engine behind the upstream NetworkPolicy conformance tool), on random
// clusters of NetworkPolicies, every ordered pair of pods and external
// addresses, on TCP, UDP and SCTP ports the policies name and ports they do
// not. Cyclonus knows nothing of nodes or cluster policies, so the clusters
// carry none and the node's own addresses are not among the sources.
//
// Cyclonus v0.5.6 reads a NotIn requirement as not matching labels that lack
// the key, where the API (k8s.io/apimachinery labels.Requirement.Matches, the
// code the API server and every controller run) matches them; Terrane
// follows the API (TestSelectorMatchesAPIMachinery), so clusters whose
// policies use NotIn are left out here.
func TestMatchesCyclonus(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	extern := []netip.Addr{netip.MustParseAddr("10.0.1.200"), netip.MustParseAddr("8.8.8.8")}
	checked, skipped := 0, 0
	for iter := range 1500 {
		c, nodes := policy.RandomCluster(r)
		c.ClusterPolicies, c.Nodes = nil, nil
		if b, _ := json.Marshal(c.Policies); strings.Contains(string(b), `"NotIn"`) {
			skipped++
			continue
		}
		sets := map[string]*policy.RuleSet{}
		for name := range nodes {
			rs, err := policy.Compile(c, policy.Node{Name: name})
			if err != nil {
				t.Fatalf("cluster %d: %v", iter, err)
			}
			sets[name] = rs
		}
		var netpols []*networkingv1.NetworkPolicy
		for _, np := range c.Policies {
			b, err := json.Marshal(np)
			if err != nil {
				t.Fatal(err)
			}
			var k networkingv1.NetworkPolicy
			if err := json.Unmarshal(b, &k); err != nil {
				t.Fatalf("policy %s does not read as networking/v1: %v\n%s", np.Key(), err, b)
			}
			if len(k.Spec.PolicyTypes) == 0 {
				// The API server's defaulting, which cyclonus expects done.
				k.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
				if len(k.Spec.Egress) > 0 {
					k.Spec.PolicyTypes = append(k.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
				}
			}
			netpols = append(netpols, &k)
		}
		engine := matcher.BuildNetworkPolicies(false, netpols)
		nsLabels := map[string]map[string]string{}
		for _, ns := range c.Namespaces {
			l := map[string]string{policy.MetadataNameLabel: ns.Name}
			for k, v := range ns.Labels {
				l[k] = v
			}
			nsLabels[ns.Name] = l
		}
		podAt := map[netip.Addr]*policy.Pod{}
		var addrs []netip.Addr
		for i := range c.Pods {
			podAt[c.Pods[i].IPs[0]] = &c.Pods[i]
			addrs = append(addrs, c.Pods[i].IPs[0])
		}
		addrs = append(addrs, extern...)
		peer := func(a netip.Addr) *matcher.TrafficPeer {
			p := &matcher.TrafficPeer{IP: a.String()}
			if q := podAt[a]; q != nil {
				p.Internal = &matcher.InternalPeer{PodLabels: q.Labels, Namespace: q.Namespace, NamespaceLabels: nsLabels[q.Namespace]}
			}
			return p
		}
		for _, src := range addrs {
			for _, dst := range addrs {
				if podAt[src] == nil && podAt[dst] == nil {
					continue
				}
				for _, proto := range []policy.Protocol{policy.TCP, policy.UDP, policy.SCTP} {
					for _, port := range []uint16{79, 80, 81, 82, 443} {
						tr := &matcher.Traffic{Source: peer(src), Destination: peer(dst), ResolvedPort: int(port), Protocol: corev1.Protocol(proto)}
						if d := podAt[dst]; d != nil {
							for _, cp := range d.Ports {
								if uint16(cp.Port) == port && cp.Proto() == proto {
									tr.ResolvedPortName = cp.Name
								}
							}
						}
						want := engine.IsTrafficAllowed(tr).IsAllowed()
						got := true
						if s := podAt[src]; s != nil {
							ep, _ := sets[s.Node].Endpoint(src)
							got = ep.Egress.Allows(dst, proto, port)
						}
						if d := podAt[dst]; d != nil && got {
							ep, _ := sets[d.Node].Endpoint(dst)
							got = ep.Ingress.Allows(src, proto, port)
						}
						checked++
						if got != want {
							b, _ := json.MarshalIndent(c, "", " ")
							t.Fatalf("cluster %d: %s -> %s %s/%d: Terrane %v, cyclonus %v\n%s\n%s", iter, src, dst, proto, port, got, want, b, tr.Table())
						}
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no cluster compared")
	}
	t.Logf("%d decisions agree with cyclonus (%d clusters with NotIn left out)", checked, skipped)
}

// TestSelectorMatchesAPIMachinery holds Selector.Matches to the API's own
// label selector code on random selectors and label sets.
func TestSelectorMatchesAPIMachinery(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	keys, vals := []string{"a", "b", "example.com/c"}, []string{"x", "y", ""}
	ops := []policy.Operator{policy.OpIn, policy.OpNotIn, policy.OpExists, policy.OpDoesNotExist}
	for range 20000 {
		var sel policy.Selector
		if r.IntN(2) == 0 {
			sel.MatchLabels = map[string]string{keys[r.IntN(3)]: vals[r.IntN(3)]}
		}
		for range r.IntN(3) {
			req := policy.Requirement{Key: keys[r.IntN(3)], Operator: ops[r.IntN(4)]}
			if req.Operator == policy.OpIn || req.Operator == policy.OpNotIn {
				for range 1 + r.IntN(2) {
					req.Values = append(req.Values, vals[r.IntN(3)])
				}
			}
			sel.MatchExpressions = append(sel.MatchExpressions, req)
		}
		labels := map[string]string{}
		for _, k := range keys {
			if r.IntN(2) == 0 {
				labels[k] = vals[r.IntN(3)]
			}
		}
		b, _ := json.Marshal(sel)
		var ls metav1.LabelSelector
		if err := json.Unmarshal(b, &ls); err != nil {
			t.Fatal(err)
		}
		ks, err := metav1.LabelSelectorAsSelector(&ls)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if got, want := sel.Matches(labels), ks.Matches(k8slabels.Set(labels)); got != want {
			t.Fatalf("selector %s on %v: Terrane %v, apimachinery %v", b, labels, got, want)
		}
	}
}
