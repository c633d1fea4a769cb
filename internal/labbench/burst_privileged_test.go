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
		if p.PluginCPUPerAdd <= 0 {
			t.Errorf("%s: plugin CPU per ADD %.2f ms, want more than 0", p.Plugin, p.PluginCPUPerAdd)
		}
		if p.SecondsToAllReachable <= 0 || p.SecondsToAllReachable < p.SecondsToAllAdded {
			t.Errorf("%s: all reachable after %.3f s, all added after %.3f s: want reachable > 0 and not before added", p.Plugin, p.SecondsToAllReachable, p.SecondsToAllAdded)
		}
	}
	if res.Peer.AgentCPUPerAdd != 0 || res.CPURatio <= 0 {
		t.Errorf("peer agent CPU %.2f ms (it has no agent), CPU ratio %.2f", res.Peer.AgentCPUPerAdd, res.CPURatio)
	}
	if res.Ratio <= 0 || len(res.Goals) != 2 {
		t.Errorf("ratio %v, goals %+v", res.Ratio, res.Goals)
	}
	t.Logf("terrane %.2f s, peer %.2f s, ratio %.2f; CPU per ADD terrane %.2f + %.2f ms, peer %.2f ms, ratio %.2f", res.Terrane.SecondsToAllReachable, res.Peer.SecondsToAllReachable, res.Ratio,
		res.Terrane.PluginCPUPerAdd, res.Terrane.AgentCPUPerAdd, res.Peer.PluginCPUPerAdd, res.CPURatio)
}
