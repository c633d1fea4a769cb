package labbench

import "testing"

// TestPrivilegedBenchBurstSmoke: a small burst through each plugin, every
// pod reachable from its node, the result filled in for both.
func TestPrivilegedBenchBurstSmoke(t *testing.T) {
	requireRoot(t, "go")
	o := benchLab(t)
	up, err := DefaultUpstreamDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureUpstreamPlugins(t.Context(), up, t.Logf); err != nil {
		t.Fatal(err)
	}
	const pods, rounds = 20, 2
	res, err := RunBurst(t.Context(), BurstOptions{LabOptions: o, UpstreamBin: up, Pods: pods, Rounds: rounds})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []BurstPlugin{res.Terrane, res.Peer} {
		if len(p.Rounds) != rounds || p.Add.N != pods*rounds {
			t.Errorf("%s: %d rounds and %d ADDs, want %d and %d", p.Plugin, len(p.Rounds), p.Add.N, rounds, pods*rounds)
		}
		if p.SecondsToAllReachable <= 0 || p.SecondsToAllReachable < p.SecondsToAllAdded {
			t.Errorf("%s: all reachable after %.3f s, all added after %.3f s: want reachable > 0 and not before added", p.Plugin, p.SecondsToAllReachable, p.SecondsToAllAdded)
		}
	}
	if res.Ratio <= 0 || len(res.Goals) != 2 {
		t.Errorf("ratio %v, goals %+v", res.Ratio, res.Goals)
	}
	t.Logf("terrane %.2f s, peer %.2f s, ratio %.2f", res.Terrane.SecondsToAllReachable, res.Peer.SecondsToAllReachable, res.Ratio)
}
