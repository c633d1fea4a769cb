package kube

import (
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"

	"github.com/terrane-net/terrane/internal/policy"
)

// cnpCRD is the upstream ClusterNetworkPolicy CRD the repository ships.
func cnpCRD(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "deploy", "kubernetes", "network-policy-api", "policy.networking.k8s.io_clusternetworkpolicies.yaml")
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPolicySourceFollowsTheAPI runs the policy source against a real
// kube-apiserver with the upstream ClusterNetworkPolicy CRD: it reads
// namespaces, pods (labels, node, status addresses, named ports), nodes,
// NetworkPolicies and ClusterNetworkPolicies as the compiler's input, wakes
// on a label change, and the compiled rule set follows.
func TestPolicySourceFollowsTheAPI(t *testing.T) {
	c, cs := testCluster(t)
	ctx := testCtx(t)
	if out, err := c.RunKubectl(ctx, "apply", "--server-side", "-f", cnpCRD(t)); err != nil {
		t.Fatalf("CRD: %v: %s", err, out)
	}
	if out, err := c.RunKubectl(ctx, "wait", "--for=condition=Established", "crd/clusternetworkpolicies.policy.networking.k8s.io"); err != nil {
		t.Fatalf("CRD: %v: %s", err, out)
	}
	for _, ns := range []string{"shop", "data"} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"team": ns}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createNode(t, ctx, cs, "n1", "192.168.0.1", map[string]string{"zone": "a"})
	pod := func(ns, name, node, ip string, labels map[string]string) {
		t.Helper()
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			Spec: corev1.PodSpec{NodeName: node, AutomountServiceAccountToken: new(bool), Containers: []corev1.Container{{
				Name: "c", Image: "serve",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}},
			}}},
		}
		created, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		created.Status.Phase = corev1.PodRunning
		created.Status.PodIP = ip
		created.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod("shop", "front", "n1", "10.1.0.2", map[string]string{"app": "front"})
	pod("shop", "cart", "n1", "10.1.0.3", map[string]string{"app": "cart"})
	pod("data", "pg", "n1", "10.1.0.4", map[string]string{"app": "pg"})
	tcp := corev1.ProtocolTCP
	http := intstr.FromString("http")
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "cart-from-front"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "cart"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "buyer"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &http}},
			}},
		},
	}
	if _, err := cs.NetworkingV1().NetworkPolicies("shop").Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cnp := `apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: no-metadata}
spec:
  tier: Admin
  priority: 5
  subject: {namespaces: {}}
  egress:
    - {name: imds, action: Deny, to: [{networks: ["169.254.169.254/32"]}]}
`
	f := filepath.Join(t.TempDir(), "cnp.yaml")
	if err := os.WriteFile(f, []byte(cnp), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := c.RunKubectl(ctx, "apply", "-f", f); err != nil {
		t.Fatalf("%v: %s", err, out)
	}

	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	src := NewPolicySource(PolicySourceOptions{Client: cs, Dynamic: dyn, Log: quietLog()})
	if _, err := src.Cluster(); err != ErrNotSynced {
		t.Errorf("before Run: %v, want ErrNotSynced", err)
	}
	if err := src.Run(ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := src.Cluster()
	if err != nil {
		t.Fatal(err)
	}
	if len(cl.Policies) != 1 || cl.Policies[0].Key() != "shop/cart-from-front" || len(cl.ClusterPolicies) != 1 || cl.ClusterPolicies[0].Spec.Tier != policy.AdminTier {
		t.Fatalf("policies: %+v, cluster policies %+v", cl.Policies, cl.ClusterPolicies)
	}
	if len(cl.Pods) != 3 || len(cl.Nodes) != 1 || cl.Nodes[0].IPs[0] != netip.MustParseAddr("192.168.0.1") {
		t.Fatalf("pods %+v nodes %+v", cl.Pods, cl.Nodes)
	}
	front, ok := src.Pod("shop", "front")
	if !ok || front.Ports[0].Name != "http" || front.IPs[0] != netip.MustParseAddr("10.1.0.2") || front.Node != "n1" {
		t.Fatalf("front: %+v %v", front, ok)
	}

	decide := func() (frontToCart, toIMDS bool) {
		t.Helper()
		cl, err := src.Cluster()
		if err != nil {
			t.Fatal(err)
		}
		rs, err := policy.Compile(cl, policy.Node{Name: "n1", IPs: []netip.Addr{netip.MustParseAddr("192.168.0.1")}})
		if err != nil {
			t.Fatal(err)
		}
		cart, _ := rs.Endpoint(netip.MustParseAddr("10.1.0.3"))
		fr, _ := rs.Endpoint(netip.MustParseAddr("10.1.0.2"))
		return cart.Ingress.Allows(netip.MustParseAddr("10.1.0.2"), policy.TCP, 8080), fr.Egress.Allows(netip.MustParseAddr("169.254.169.254"), policy.TCP, 80)
	}
	if ok, imds := decide(); ok || imds {
		t.Fatalf("before the label: front→cart %v, front→IMDS %v; want both denied", ok, imds)
	}

	// Drain the wake-ups so far, then a label change must wake the source.
	for len(src.Changed()) > 0 {
		<-src.Changed()
	}
	p, err := cs.CoreV1().Pods("shop").Get(ctx, "front", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Labels["role"] = "buyer"
	if _, err := cs.CoreV1().Pods("shop").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	for {
		select {
		case <-src.Changed():
		case <-deadline:
			t.Fatal("no change seen after the label change")
		}
		if got, _ := src.Pod("shop", "front"); got.Labels["role"] == "buyer" {
			break
		}
	}
	if ok, _ := decide(); !ok {
		t.Error("after the label: front→cart on its named port still denied")
	}
}
