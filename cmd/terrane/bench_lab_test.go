package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/labbench"
)

// Bad flags of bench cni and bench throughput are refused with exit status
// 2 before anything is built (no root needed).
func TestBenchLabFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cni", "-o", "xml"}, `-o "xml": use table or json`},
		{[]string{"cni", "--n", "0"}, "--n 0: want at least 1"},
		{[]string{"cni", "--concurrency", "0,300"}, "--concurrency 0: want 1 to 256\n--concurrency 300: want 1 to 256"},
		{[]string{"cni", "--name", "bench-cni"}, `lab name "bench-cni"`},
		{[]string{"cni", "--kube-bins", "/opt/k8s"}, "--kube-bins /opt/k8s: only with --policy"},
		{[]string{"cni", "--policy", "--n", "0", "--concurrency", "300"}, "--n 0: want at least 1\n--concurrency 300: want 1 to 256"},
		{[]string{"cni", "--policy", "-o", "xml"}, `-o "xml": use table or json`},
		{[]string{"cni", "--policy", "--name", "bench-cni"}, `lab name "bench-cni"`},
		{[]string{"throughput", "--seconds", "0", "--rounds", "0"}, "--seconds 0: want 1 to 600\n--rounds 0: want 1 to 100"},
		{[]string{"throughput", "-o", "yaml"}, `-o "yaml": use table or json`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := benchCmd(t, tc.args...)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want exit status 2 with %q", err, tc.want)
			}
		})
	}
}

// The table shows terrane+policy between terrane and ptp+host-local, its
// two ratios and what was verified of it.
func TestPrintBenchCNIPolicy(t *testing.T) {
	lat := func(ms float64) labbench.Latency {
		return labbench.Latency{N: 2, P50: ms, P90: ms, P99: 2 * ms, Mean: ms, Min: ms, Max: 2 * ms}
	}
	pl := func(ms float64) labbench.PluginLatency { return labbench.PluginLatency{Add: lat(ms), Del: lat(ms)} }
	run := labbench.CNIRun{Concurrency: 1, Terrane: pl(10), Upstream: pl(20), TerranePolicy: &labbench.PluginLatency{Add: lat(15), Del: lat(10)},
		Ratio: labbench.CNIRatios{AddP50: 0.5, AddP99: 0.5, DelP50: 0.5, DelP99: 0.5},
		PolicyRatio: &labbench.PolicyRatios{OverTerrane: labbench.CNIRatios{AddP50: 1.5, AddP99: 1.5, DelP50: 1, DelP99: 1},
			OverUpstream: labbench.CNIRatios{AddP50: 0.75, AddP99: 0.75, DelP50: 0.5, DelP99: 0.5}}}
	r := &labbench.CNIResult{N: 2, Runs: []labbench.CNIRun{run}, Policy: &labbench.CNIPolicy{Host: "host-2", Policies: []string{"bench/default-deny"},
		VerifiedRounds: 2, VerifiedPods: 7, DigestAtOnce: 2, Probes: []labbench.PolicyProbe{{Config: "terrane+policy", Port: 9090}}}}
	var b strings.Builder
	if err := printBenchCNI(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"terrane+policy: host-2's agent enforcing bench/default-deny; verified after 2 rounds' ADDs (7 pods; digest at the first read in 2 rounds)",
		"probes pod → pod: terrane+policy 9090/TCP blocked",
		"1          terrane+policy       15.00       30.00       10.00       20.00",
		"1  terrane+policy/terrane       1.50×       1.50×       1.00×       1.00×",
		"1      terrane+policy/ptp       0.75×       0.75×       0.50×       0.50×",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if i, j := strings.Index(out, " terrane+policy "), strings.Index(out, " ptp+host-local "); i < 0 || j < i {
		t.Errorf("terrane+policy not before ptp+host-local:\n%s", out)
	}
}
