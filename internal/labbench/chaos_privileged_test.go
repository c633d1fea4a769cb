package labbench

import (
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// TestPrivilegedBenchChaosShort runs a short chaos run — a real 3-member
// etcd cluster in namespaces, two servers, load through the API — with
// every fault kind once, and wants no duplicate, lost or leaked endpoint.
// benchLab fails the test if a namespace is left behind.
func TestPrivilegedBenchChaosShort(t *testing.T) {
	requireRoot(t, "go")
	o := ChaosOptions{
		LabOptions: benchLab(t),
		Servers:    2, Workers: 4, Rate: 80, Live: 8,
		Duration:   4*6*time.Second + 3*time.Second,
		FaultEvery: 6 * time.Second,
		Timeout:    3 * time.Second,
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
	var kinds []string
	for _, f := range res.Faults {
		if f.Error != "" {
			t.Errorf("fault %s %s: %s", f.Kind, f.Target, f.Error)
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
