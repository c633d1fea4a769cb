package lab

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// policyExpected is the shipped policy scenario's matrix as its comment
// states it, written from the policies' words (not from the compiler):
// x/x-a takes only pod=b pods, from any namespace, on serve-80-tcp;
// namespace z may not send UDP 81 to namespace x; a pod reaches itself;
// everything else passes. bLabelled lists the pods labelled pod=b.
func policyExpected(from, to, spec string, bLabelled map[string]bool, npGone, denyY bool) bool {
	ns := func(pod string) string { return strings.SplitN(pod, "/", 2)[0] }
	if from == to {
		return true
	}
	if denyY && ns(to) == "y" {
		return false // y's deny-all: isolated, nothing admitted
	}
	if spec == "81/UDP" && ns(from) == "z" && ns(to) == "x" {
		return false // the Admin tier, before any NetworkPolicy
	}
	if to == "x/x-a" && !npGone {
		return spec == "serve-80-tcp" && bLabelled[from]
	}
	return true
}

// TestPrivilegedLabPolicy: the shipped policy scenario — a
// NetworkPolicy with a named port and selectors across namespaces and an
// Admin-tier ClusterNetworkPolicy, enforced by the agents — gives exactly the stated matrix pair by pair, on TCP and
// UDP. Changes through the lab's commands (a pod relabelled, a deny-all
// applied, the policies deleted) are in force, pair by pair, as soon as the
// command's wait for every agent to enforce them returns: no retry.
//
// Both sources run it: the lab's kube-apiserver (--k8s: the agents'
// --policy kubernetes) and the lab's Terrane server (no Kubernetes: the
// agents' --policy server).
func TestPrivilegedLabPolicy(t *testing.T) {
	requireRoot(t)
	t.Run("kubernetes", func(t *testing.T) {
		n := testLab(t)
		labPolicy(t, n, upK8s(t, n, "policy", 0))
	})
	t.Run("server", func(t *testing.T) {
		n := testLab(t)
		st := upScenario(t, n, "policy")
		if st.Policy != PolicyServer {
			t.Fatalf("the policy scenario without --k8s: policy source %q, want %q", st.Policy, PolicyServer)
		}
		labPolicy(t, n, st)
	})
}

func labPolicy(t *testing.T, n Names, st *State) {
	specs := []PortSpec{{Name: "serve-80-tcp"}, {Port: 81, Protocol: "UDP"}}
	b := map[string]bool{"x/x-b": true, "y/y-b": true, "z/z-b": true}

	check := func(what string, npGone, denyY bool) error {
		st := reload(t, n)
		start := time.Now()
		rep, err := ProbePorts(t.Context(), st.PortTargets(), specs)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Results) != 9*9*2 {
			t.Fatalf("%s: %d results, want %d", what, len(rep.Results), 9*9*2)
		}
		var wrong []string
		for _, r := range rep.Results {
			if want := policyExpected(r.From, r.To, r.Spec, b, npGone, denyY); r.OK != want {
				wrong = append(wrong, fmt.Sprintf("%s -> %s %s: reached %v, want %v (%s)", r.From, r.To, r.Spec, r.OK, want, r.Error))
			}
		}
		t.Logf("%s: 162 probes in %.2f s, %d wrong", what, time.Since(start).Seconds(), len(wrong))
		if len(wrong) > 0 {
			return fmt.Errorf("%d pairs differ:\n%s\n%s", len(wrong), strings.Join(wrong, "\n"), rep.Matrix())
		}
		return nil
	}
	if err := check("as shipped", false, false); err != nil {
		t.Fatal(err)
	}
	enforced := func(what string) {
		t.Helper()
		d, err := WaitEnforced(t.Context(), reload(t, n))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: every agent enforces it %d ms after the change", what, d.Milliseconds())
	}

	// x-c becomes pod=b: it joins the peers of x-a's policy.
	if err := Label(t.Context(), st, "pod", "x/x-c", []string{"pod=b"}); err != nil {
		t.Fatal(err)
	}
	b["x/x-c"] = true
	enforced("x-c relabelled")
	if err := check("x-c relabelled", false, false); err != nil {
		t.Fatal(err)
	}

	// A deny-all in y, from a file as lab policy apply reads it.
	names, err := ApplyPolicyFile(t.Context(), st, []byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: \"y\"}\nspec: {podSelector: {}}\n"))
	if err != nil || len(names) != 1 {
		t.Fatalf("apply: %v %v", names, err)
	}
	enforced("deny-all in y")
	if err := check("deny-all in y", false, true); err != nil {
		t.Fatal(err)
	}

	// Both NetworkPolicies gone: x-a and y open; the Admin tier still holds.
	for _, ref := range []string{"y/deny-all", "x/x-a-from-b-on-80"} {
		if err := DeletePolicy(t.Context(), st, ref); err != nil {
			t.Fatal(err)
		}
	}
	enforced("NetworkPolicies deleted")
	if err := check("NetworkPolicies deleted", true, false); err != nil {
		t.Fatal(err)
	}

	// A label flipping in and out of a selector 30 times: each change is
	// enforced on every host (the latency is measured and logged; the
	// numbers live in docs/benchmarks.md, not in an assertion).
	names, err = ApplyPolicyFile(t.Context(), st, []byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a-from-b, namespace: x}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: b}}}]}]\n"))
	if err != nil || len(names) != 1 {
		t.Fatalf("apply: %v %v", names, err)
	}
	enforced("a-from-b")
	lat, err := LabelLatency(t.Context(), st, "y/y-c", "pod", []string{"b", "c"}, 30)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lat)
	t.Logf("label change enforced on every host: p50 %s, p99 %s, max %s over %d changes",
		lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], len(lat))
}

// TestPrivilegedLabVMPortPolicy: a VM port (an endpoint the server
// allocated) is a workload of the server's policy source, named by its ID
// in namespace default: labelling it makes a NetworkPolicy select it, its
// host's agent enforces that on the port, and deleting the policy opens
// it again — each in force when WaitEnforced returns.
func TestPrivilegedLabVMPortPolicy(t *testing.T) {
	requireRoot(t)
	n := testLab(t)
	upScenario(t, n, "policy")
	ctx := t.Context()
	vm, err := AddVM(ctx, n.Lab, n.Dir, VM{Name: "vm1", Host: "host-2"}, VMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A pod added later with a label (lab add-pod --label) is selected by
	// it from its first packet.
	if _, err := AddPod(ctx, n.Lab, n.Dir, Pod{Name: "w1", Host: "host-1", Namespace: "default", Labels: map[string]string{"pod": "a"}}); err != nil {
		t.Fatal(err)
	}
	ping := func(pod string) bool {
		return exec.Command("ip", "netns", "exec", n.Pod(pod), "ping", "-c", "1", "-W", "1", vm.Addr.String()).Run() == nil
	}
	want := func(what string, fromA, fromB bool) {
		t.Helper()
		if _, err := WaitEnforced(ctx, reload(t, n)); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := ping("x-a"); got != fromA {
			t.Errorf("%s: x-a (pod=a) pings the VM port: %v, want %v", what, got, fromA)
		}
		if got := ping("w1"); got != fromA {
			t.Errorf("%s: w1 (added with pod=a) pings the VM port: %v, want %v", what, got, fromA)
		}
		if got := ping("x-b"); got != fromB {
			t.Errorf("%s: x-b (pod=b) pings the VM port: %v, want %v", what, got, fromB)
		}
	}
	want("no policy selects the port", true, true)
	st := reload(t, n)
	if err := Label(ctx, st, "pod", "default/vm1", []string{"role=db"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ApplyPolicyFile(ctx, st, []byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-from-a}\nspec:\n  podSelector: {matchLabels: {role: db}}\n  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: a}}}]}]\n")); err != nil {
		t.Fatal(err)
	}
	want("db-from-a selects the labelled port", true, false)
	if err := DeletePolicy(ctx, st, "default/db-from-a"); err != nil {
		t.Fatal(err)
	}
	want("db-from-a deleted", true, true)
}
