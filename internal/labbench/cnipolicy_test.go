package labbench

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/lab"
	"github.com/terrane-net/terrane/internal/policy"
)

// checkCNIPolicyResult reports what is implausible about the terrane+policy
// part of a CNI result of n samples per configuration at the levels conc.
func checkCNIPolicyResult(r *CNIResult, n int, conc []int) []string {
	var bad []string
	p := r.Policy
	if p == nil {
		return []string{"no policy configuration in the result"}
	}
	rounds := 1 // the warm-up
	for _, c := range conc {
		batch := max(c, minBatch)
		rounds += (n + batch - 1) / batch
	}
	if p.VerifiedRounds != rounds || p.VerifiedPods != warmupPods+n*len(conc) {
		bad = append(bad, fmt.Sprintf("enforcement verified after %d rounds (%d pods), want %d (%d)", p.VerifiedRounds, p.VerifiedPods, rounds, warmupPods+n*len(conc)))
	}
	if p.DigestAtOnce < 0 || p.DigestAtOnce > p.VerifiedRounds {
		bad = append(bad, fmt.Sprintf("digest at once in %d of %d rounds", p.DigestAtOnce, p.VerifiedRounds))
	}
	want := map[string]bool{"terrane 8080": true, "terrane 9090": true, "terrane+policy 8080": true, "terrane+policy 9090": false}
	got := map[string]bool{}
	for _, pr := range p.Probes {
		got[fmt.Sprintf("%s %d", pr.Config, pr.Port)] = pr.Reached
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		bad = append(bad, fmt.Sprintf("probes reached %v, want %v", got, want))
	}
	for _, run := range r.Runs {
		at := fmt.Sprintf("concurrency %d", run.Concurrency)
		if run.TerranePolicy == nil || run.PolicyRatio == nil {
			bad = append(bad, at+": no terrane+policy latency or ratio")
			continue
		}
		bad = append(bad, checkLatency(at+" terrane+policy ADD", run.TerranePolicy.Add, n)...)
		bad = append(bad, checkLatency(at+" terrane+policy DEL", run.TerranePolicy.Del, n)...)
		for name, q := range map[string][3]float64{
			"add_p50 over terrane": {run.PolicyRatio.OverTerrane.AddP50, run.TerranePolicy.Add.P50, run.Terrane.Add.P50},
			"add_p99 over terrane": {run.PolicyRatio.OverTerrane.AddP99, run.TerranePolicy.Add.P99, run.Terrane.Add.P99},
			"del_p50 over terrane": {run.PolicyRatio.OverTerrane.DelP50, run.TerranePolicy.Del.P50, run.Terrane.Del.P50},
			"del_p99 over terrane": {run.PolicyRatio.OverTerrane.DelP99, run.TerranePolicy.Del.P99, run.Terrane.Del.P99},
			"add_p50 over ptp":     {run.PolicyRatio.OverUpstream.AddP50, run.TerranePolicy.Add.P50, run.Upstream.Add.P50},
			"add_p99 over ptp":     {run.PolicyRatio.OverUpstream.AddP99, run.TerranePolicy.Add.P99, run.Upstream.Add.P99},
			"del_p50 over ptp":     {run.PolicyRatio.OverUpstream.DelP50, run.TerranePolicy.Del.P50, run.Upstream.Del.P50},
			"del_p99 over ptp":     {run.PolicyRatio.OverUpstream.DelP99, run.TerranePolicy.Del.P99, run.Upstream.Del.P99},
		} {
			if q[2] == 0 || !near(q[0], q[1]/q[2]) {
				bad = append(bad, fmt.Sprintf("%s: ratio %s %v, want %v / %v", at, name, q[0], q[1], q[2]))
			}
		}
	}
	return bad
}

// The policy check catches broken results.
func TestPolicyResultCheckFails(t *testing.T) {
	lat := Latency{N: 2, P50: 1, P90: 2, P99: 2, Mean: 1.5, Min: 1, Max: 2}
	pol := Latency{N: 2, P50: 2, P90: 3, P99: 4, Mean: 2.5, Min: 2, Max: 4}
	good := func() *CNIResult {
		run := CNIRun{Concurrency: 1, Terrane: PluginLatency{Add: lat, Del: lat}, Upstream: PluginLatency{Add: lat, Del: lat},
			TerranePolicy: &PluginLatency{Add: pol, Del: lat}}
		run.PolicyRatio = &PolicyRatios{OverTerrane: ratios(*run.TerranePolicy, run.Terrane), OverUpstream: ratios(*run.TerranePolicy, run.Upstream)}
		return &CNIResult{N: 2, Runs: []CNIRun{run}, Policy: &CNIPolicy{VerifiedRounds: 2, VerifiedPods: warmupPods + 2, DigestAtOnce: 2,
			Probes: []PolicyProbe{{Config: "terrane", Port: 8080, Reached: true}, {Config: "terrane", Port: 9090, Reached: true},
				{Config: "terrane+policy", Port: 8080, Reached: true}, {Config: "terrane+policy", Port: 9090}}}}
	}
	if bad := checkCNIPolicyResult(good(), 2, []int{1}); len(bad) > 0 {
		t.Fatalf("a sane result fails: %v", bad)
	}
	for name, breakIt := range map[string]func(r *CNIResult){
		"no policy":          func(r *CNIResult) { r.Policy = nil },
		"a round unverified": func(r *CNIResult) { r.Policy.VerifiedRounds = 1 },
		"denied port open":   func(r *CNIResult) { r.Policy.Probes[3].Reached = true },
		"probe missing":      func(r *CNIResult) { r.Policy.Probes = r.Policy.Probes[:3] },
		"latency missing":    func(r *CNIResult) { r.Runs[0].TerranePolicy = nil },
		"samples missing":    func(r *CNIResult) { r.Runs[0].TerranePolicy.Add.N = 1 },
		"ratio not derived":  func(r *CNIResult) { r.Runs[0].PolicyRatio.OverTerrane.AddP50 = 1 },
		"ratio over ptp off": func(r *CNIResult) { r.Runs[0].PolicyRatio.OverUpstream.DelP99 = 3 },
	} {
		r := good()
		breakIt(r)
		if len(checkCNIPolicyResult(r, 2, []int{1})) == 0 {
			t.Errorf("%s: not caught", name)
		}
	}
}

// benchCluster is the API's cluster as the policy scenario makes it, with
// pods of the benchmark's namespace on the policy host.
func benchCluster(t *testing.T, withPolicies bool, pods ...string) *policy.Cluster {
	t.Helper()
	sc, err := lab.ParseScenario([]byte(cniPolicyScenario))
	if err != nil {
		t.Fatal(err)
	}
	c := &policy.Cluster{Namespaces: []policy.Namespace{{Name: "kube-system"}}}
	for _, ns := range sc.Namespaces {
		c.Namespaces = append(c.Namespaces, policy.Namespace{Name: ns.Name, Labels: ns.Labels})
	}
	if withPolicies {
		for _, raw := range sc.Policies {
			var np policy.NetworkPolicy
			if err := json.Unmarshal(raw, &np); err != nil {
				t.Fatal(err)
			}
			c.Policies = append(c.Policies, np)
		}
	}
	for _, name := range pods {
		c.Pods = append(c.Pods, policy.Pod{Namespace: policyNamespace, Name: name, Node: policyHost, Labels: map[string]string{"app": "bench"},
			Ports: []policy.ContainerPort{{Name: "http", Port: allowedPort, Protocol: "TCP"}}})
	}
	return c
}

// The scenario's policies isolate every benchmark pod both ways; without
// them the round's rule set is refused, so a run cannot time ADDs that
// compile nothing.
func TestRoundRuleSet(t *testing.T) {
	node := policy.Node{Name: policyHost, IPs: []netip.Addr{netip.MustParseAddr("192.168.10.12")}}
	pods := []benchPod{
		{namespace: policyNamespace, name: "bench-pol-a", addr: netip.MustParseAddr("10.10.0.70")},
		{namespace: policyNamespace, name: "bench-pol-b", addr: netip.MustParseAddr("10.10.0.71")},
	}
	rs, err := roundRuleSet(benchCluster(t, true, "bench-pol-a", "bench-pol-b"), node, pods)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Endpoints) != 2 || rs.Endpoints[0].IPs[0] != pods[0].addr || len(rs.Endpoints[0].Ingress.Ports) == 0 {
		t.Errorf("rule set %+v: want both pods at their addresses, 8080 admitted", rs.Endpoints)
	}
	if _, err := roundRuleSet(benchCluster(t, false, "bench-pol-a", "bench-pol-b"), node, pods); err == nil || !strings.Contains(err.Error(), "no policy isolates pod bench/bench-pol-a, bench/bench-pol-b") {
		t.Errorf("without policies: %v, want the pods named as not isolated", err)
	}
	// A pod the API does not show is in no rule set.
	if _, err := roundRuleSet(benchCluster(t, true, "bench-pol-a"), node, pods); err == nil || !strings.Contains(err.Error(), "bench/bench-pol-b") {
		t.Errorf("a pod missing from the API: %v, want it named", err)
	}
}

// awaitDigest accepts the digest at once, waits for a digest that comes
// later (the goroutine may read before or after the write), and fails on a
// wrong or missing one.
func TestAwaitDigest(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.json")
	write := func(d string) {
		if err := os.WriteFile(file, []byte(`{"digest":"`+d+`","endpoints":1}`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := awaitDigest(t.Context(), file, "abc", 20*time.Millisecond); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("no status file: %v", err)
	}
	write("abc")
	if at, err := awaitDigest(t.Context(), file, "abc", time.Second); err != nil || !at {
		t.Errorf("matching digest: at once %v, %v", at, err)
	}
	if _, err := awaitDigest(t.Context(), file, "def", 20*time.Millisecond); err == nil || !strings.Contains(err.Error(), "holds digest abc, want def") {
		t.Errorf("other digest: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := awaitDigest(t.Context(), file, "later", 10*time.Second); err != nil {
			t.Errorf("digest written later: %v", err)
		}
	}()
	write("later")
	<-done
}

// A denied port that reaches on the policy host, or a blocked port where
// policy is off, fails the probe.
func TestCheckProbes(t *testing.T) {
	res := func(allowed, denied bool) []lab.PortResult {
		return []lab.PortResult{
			{From: "a", To: "b", Port: allowedPort, Protocol: "TCP", OK: allowed},
			{From: "a", To: "b", Port: deniedPort, Protocol: "TCP", OK: denied},
			{From: "b", To: "a", Port: deniedPort, Protocol: "TCP", OK: true}, // not the pair asked about
		}
	}
	for _, tc := range []struct {
		name             string
		allowed, denied  bool
		policyOff, wantE bool
	}{
		{"enforced", true, false, false, false},
		{"denied port reached", true, true, false, true},
		{"allowed port blocked", false, false, false, true},
		{"policy off", true, true, true, false},
		{"policy off but blocked", true, false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probes, err := checkProbes("c", "a", "b", res(tc.allowed, tc.denied), tc.policyOff)
			if (err != nil) != tc.wantE || len(probes) != 2 {
				t.Errorf("%d probes, error %v; want 2, error %v", len(probes), err, tc.wantE)
			}
		})
	}
	if _, err := checkProbes("c", "a", "b", res(true, false)[:1], false); err == nil || !strings.Contains(err.Error(), "9090/TCP was not probed") {
		t.Errorf("a port not probed: %v", err)
	}
}

func TestPrivilegedBenchCNIPolicySmoke(t *testing.T) {
	requireRoot(t, "go")
	o := benchLab(t)
	up, err := DefaultUpstreamDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureUpstreamPlugins(t.Context(), up, t.Logf); err != nil {
		t.Fatal(err)
	}
	const n = 6
	conc := []int{1, 3}
	res, err := RunCNI(t.Context(), CNIOptions{LabOptions: o, UpstreamBin: up, N: n, Concurrency: conc, Policy: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range checkCNIResult(res, n, conc) {
		t.Error(bad)
	}
	for _, bad := range checkCNIPolicyResult(res, n, conc) {
		t.Error(bad)
	}
	for _, run := range res.Runs {
		t.Logf("concurrency %d: ADD p50 terrane %.1f ms, terrane+policy %.1f ms (%.2f×), ptp %.1f ms", run.Concurrency,
			run.Terrane.Add.P50, run.TerranePolicy.Add.P50, run.PolicyRatio.OverTerrane.AddP50, run.Upstream.Add.P50)
	}
	t.Logf("policy: %+v", *res.Policy)
}
