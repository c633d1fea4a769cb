package lab

import (
	"strings"
	"testing"
	"time"
)

// TestPrivilegedLabNetpolUpstream: the upstream Kubernetes NetworkPolicy
// e2e cases (examples/lab/netpol/upstream.yaml) on one --k8s lab of the
// netpol scenario, brought up once. Each case starts from a reset lab (no
// policy, the scenario's labels), its changes go through the lab's
// functions, which return once every agent enforces them, and every pair
// of the case's pods on every port it probes must be what upstream
// expects — no retry. SCTP probes are left out (no SCTP in this kernel);
// their policies are still applied and enforced. Both policy sources run
// the cases: the lab's kube-apiserver (--k8s) and the lab's server.
func TestPrivilegedLabNetpolUpstream(t *testing.T) {
	requireRoot(t)
	f, err := LoadPolicyCases("", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("kubernetes", func(t *testing.T) {
		n := testLab(t)
		netpolUpstream(t, f, upK8s(t, n, f.Scenario, 0))
	})
	t.Run("server", func(t *testing.T) {
		netpolUpstream(t, f, upScenario(t, testLab(t), f.Scenario))
	})
}

func netpolUpstream(t *testing.T, f *PolicyCaseFile, st *State) {
	start := time.Now()
	rs, err := RunPolicyCases(t.Context(), st, f.Cases, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != len(f.Cases) {
		t.Fatalf("%d results for %d cases", len(rs), len(f.Cases))
	}
	compared, leftOut, loopback := 0, 0, 0
	for _, r := range rs {
		compared += r.Compared
		leftOut += len(r.LeftOut)
		loopback += len(r.Loopback)
		if r.Pass {
			continue
		}
		var lines []string
		for _, m := range r.Mismatches {
			lines = append(lines, "  "+m.String())
		}
		if r.Error != "" {
			lines = append(lines, "  error: "+r.Error)
		}
		t.Errorf("%s:\n%s\n%s", r.Case, strings.Join(lines, "\n"), strings.Join(r.Tables, "\n"))
	}

	// The runner can fail: upstream's first case with an expected matrix
	// that forgets the deny-all fails on exactly the 6 pairs into x.
	wrong := f.Cases[0]
	wrong.Name += " (expecting every pair reached)"
	wrong.Steps = []PolicyCaseStep{{Apply: wrong.Steps[0].Apply, Probes: []PolicyCaseProbe{{Port: "80/TCP"}}}}
	neg, err := RunPolicyCases(t.Context(), st, []PolicyCase{wrong}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range neg[0].Mismatches {
		if !m.Want || m.Got || !strings.HasPrefix(m.To, "x/") {
			t.Errorf("wrong case: unexpected mismatch %s", m)
		}
		got = append(got, m.From+">"+m.To)
	}
	if neg[0].Pass || len(got) != 6 {
		t.Errorf("wrong case: pass %v, mismatches %v; want the 6 pairs into x", neg[0].Pass, got)
	}

	t.Logf("%s; %d pairs compared, %d probes left out, %d self pairs upstream expects denied reached (not compared) in %.1f s",
		PolicyCaseSummary(rs), compared, leftOut, loopback, time.Since(start).Seconds())
}
