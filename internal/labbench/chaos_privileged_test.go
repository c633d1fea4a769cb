package labbench

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// TestPrivilegedBenchChaosShort runs a short chaos run — a real 3-member
// etcd cluster in namespaces, two servers, load through the API, three
// hosts whose agents use both servers, probe pods and churn pods through
// libcni, every pod pinging every other — with every fault kind once. It
// wants no duplicate, lost or leaked address, every pod ADD and DEL
// served, and no echo between pods lost to a fault of the control plane
// or of an agent: the dataplane does not lean on either. benchLab fails the
// test if a namespace is left behind.
func TestPrivilegedBenchChaosShort(t *testing.T) {
	requireRoot(t, "go")
	o := ChaosOptions{
		LabOptions: benchLab(t),
		Servers:    2, Workers: 4, Rate: 80, Live: 8,
		Duration:   4 * time.Minute, // a bound: the run ends after its faults
		FaultEvery: 6 * time.Second, Faults: len(ChaosFaultKinds),
		Timeout: 3 * time.Second,
		Hosts:   3, PodRate: 3, PodsPerHost: 3, ProbeInterval: 50 * time.Millisecond,
	}
	res, err := RunChaos(t.Context(), o)
	if res != nil {
		out, _ := json.MarshalIndent(res, "", "  ")
		t.Logf("result:\n%s", out)
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicates != 0 || res.Lost != 0 || res.LeakedAfterGC != 0 {
		t.Errorf("duplicates %d, lost %d, leaked %d; want 0/0/0: %q", res.Duplicates, res.Lost, res.LeakedAfterGC, res.Examples)
	}
	if !res.CheckClean {
		t.Errorf("the server's audit found %q", res.CheckFindings)
	}
	if res.InDoubt != 0 {
		t.Errorf("%d operations never answered: %q", res.InDoubt, res.Examples)
	}
	if res.Allocations < 100 || res.Releases == 0 {
		t.Errorf("%d allocations, %d releases acknowledged: the load did not run", res.Allocations, res.Releases)
	}
	if res.PodAdds < 10 || res.PodDels == 0 || res.PodAddFailures+res.PodDelFailures != 0 {
		t.Errorf("pods: %d ADDs, %d DELs, %d and %d failed; want churn and no failure: %q", res.PodAdds, res.PodDels, res.PodAddFailures, res.PodDelFailures, res.Examples)
	}
	if res.ProbePairs < 6 || res.Echoes < 1000 {
		t.Errorf("%d probe pairs, %d echoes: the probes did not run", res.ProbePairs, res.Echoes)
	}
	var kinds []string
	for _, f := range res.Faults {
		if f.Error != "" {
			t.Errorf("fault %s %s: %s", f.Kind, f.Target, f.Error)
		}
		// A lost host's new probe pod may wait for its peers' routes to
		// its new blocks; nothing else may cut a pair off.
		if limit := map[bool]float64{true: 3, false: 0}[f.Kind == FaultHostLoss]; f.PairUnreachableSeconds > limit {
			t.Errorf("fault %s %s: pair %s unreachable %.2f s, want at most %.0f s", f.Kind, f.Target, f.PairUnreachable, f.PairUnreachableSeconds, limit)
		}
		if f.Target == "" || f.HealedSeconds < f.AtSeconds || f.RecoveredSeconds < f.HealedSeconds {
			t.Errorf("fault %+v: no target, or healed/recovered before injected", f)
		}
		kinds = append(kinds, f.Kind)
	}
	for _, k := range ChaosFaultKinds {
		if !slices.Contains(kinds, k) {
			t.Errorf("fault %s was not injected (injected: %q)", k, kinds)
		}
	}
}
