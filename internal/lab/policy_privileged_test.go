package lab

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// policyExpected is the shipped policy scenario's matrix as its comment
// states it, written from the policies' words (not from the compiler):
// x/x-a takes only pod=b pods, from any namespace, on serve-80-tcp;
// namespace z may not send UDP 81 to namespace x; a pod reaches itself;
// everything else passes. bLabelled lists the pods labelled pod=b.
func policyExpected(from, to, spec string, bLabelled map[string]bool, npGone bool) bool {
	ns := func(pod string) string { return strings.SplitN(pod, "/", 2)[0] }
	if from == to {
		return true
	}
	if spec == "81/UDP" && ns(from) == "z" && ns(to) == "x" {
		return false // the Admin tier, before any NetworkPolicy
	}
	if to == "x/x-a" && !npGone {
		return spec == "serve-80-tcp" && bLabelled[from]
	}
	return true
}

// TestPrivilegedLabPolicy: the shipped policy scenario under --k8s — a
// NetworkPolicy with a named port and selectors across namespaces and an
// Admin-tier ClusterNetworkPolicy, enforced by the agents from the lab's
// kube-apiserver — gives exactly the stated matrix pair by pair, on TCP and
// UDP; a pod relabelled joins the policy's peers without restarting
// anything; the policy deleted opens x-a again.
func TestPrivilegedLabPolicy(t *testing.T) {
	requireRoot(t)
	n := testLab(t)
	st := upK8s(t, n, "policy", 0)
	specs := []PortSpec{{Name: "serve-80-tcp"}, {Port: 81, Protocol: "UDP"}}
	b := map[string]bool{"x/x-b": true, "y/y-b": true, "z/z-b": true}

	check := func(what string, npGone bool) error {
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
			if want := policyExpected(r.From, r.To, r.Spec, b, npGone); r.OK != want {
				wrong = append(wrong, fmt.Sprintf("%s -> %s %s: reached %v, want %v (%s)", r.From, r.To, r.Spec, r.OK, want, r.Error))
			}
		}
		t.Logf("%s: 162 probes in %.2f s, %d wrong", what, time.Since(start).Seconds(), len(wrong))
		if len(wrong) > 0 {
			return fmt.Errorf("%d pairs differ:\n%s\n%s", len(wrong), strings.Join(wrong, "\n"), rep.Matrix())
		}
		return nil
	}
	if err := check("as shipped", false); err != nil {
		t.Fatal(err)
	}

	// x-c becomes pod=b: it joins the peers of x-a's policy.
	kubectl(t, st, "label", "pod", "-n", "x", "x-c", "pod=b", "--overwrite")
	b["x/x-c"] = true
	waitUntil(t, 20*time.Second, "x-c relabelled pod=b reaches x-a on serve-80-tcp", func() error { return check("x-c relabelled", false) })

	// The NetworkPolicy gone: x-a is no longer isolated; the Admin tier
	// still holds.
	kubectl(t, st, "delete", "networkpolicy", "-n", "x", "x-a-from-b-on-80")
	waitUntil(t, 20*time.Second, "x-a open once its policy is deleted", func() error { return check("policy deleted", true) })
}
