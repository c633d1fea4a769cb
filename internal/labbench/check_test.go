package labbench

import (
	"fmt"
	"maps"
	"math"
	"testing"
)

// checkLatency reports what is implausible about one plugin's latency.
func checkLatency(what string, l Latency, n int) []string {
	var bad []string
	if l.N != n {
		bad = append(bad, fmt.Sprintf("%s: %d samples, want %d", what, l.N, n))
	}
	for name, v := range map[string]float64{"p50": l.P50, "p90": l.P90, "p99": l.P99, "mean": l.Mean, "min": l.Min, "max": l.Max} {
		if !(v > 0) || math.IsInf(v, 0) {
			bad = append(bad, fmt.Sprintf("%s: %s %v ms, want > 0", what, name, v))
		}
	}
	if !(l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max) {
		bad = append(bad, fmt.Sprintf("%s: quantiles out of order: min %v p50 %v p90 %v p99 %v max %v", what, l.Min, l.P50, l.P90, l.P99, l.Max))
	}
	return bad
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// checkCNIResult reports what is implausible about a CNI benchmark result
// of n samples per plugin at the concurrency levels conc.
func checkCNIResult(r *CNIResult, n int, conc []int) []string {
	var bad []string
	if r.N != n {
		bad = append(bad, fmt.Sprintf("n %d, want %d", r.N, n))
	}
	if len(r.Runs) != len(conc) {
		return append(bad, fmt.Sprintf("%d runs, want %d", len(r.Runs), len(conc)))
	}
	for i, run := range r.Runs {
		at := fmt.Sprintf("concurrency %d", run.Concurrency)
		if run.Concurrency != conc[i] {
			bad = append(bad, fmt.Sprintf("run %d: concurrency %d, want %d", i, run.Concurrency, conc[i]))
		}
		bad = append(bad, checkLatency(at+" terrane ADD", run.Terrane.Add, n)...)
		bad = append(bad, checkLatency(at+" terrane DEL", run.Terrane.Del, n)...)
		bad = append(bad, checkLatency(at+" ptp ADD", run.Upstream.Add, n)...)
		bad = append(bad, checkLatency(at+" ptp DEL", run.Upstream.Del, n)...)
		for name, pair := range map[string][3]float64{
			"add_p50": {run.Ratio.AddP50, run.Terrane.Add.P50, run.Upstream.Add.P50},
			"add_p99": {run.Ratio.AddP99, run.Terrane.Add.P99, run.Upstream.Add.P99},
			"del_p50": {run.Ratio.DelP50, run.Terrane.Del.P50, run.Upstream.Del.P50},
			"del_p99": {run.Ratio.DelP99, run.Terrane.Del.P99, run.Upstream.Del.P99},
		} {
			if pair[2] == 0 || !near(pair[0], pair[1]/pair[2]) {
				bad = append(bad, fmt.Sprintf("%s: ratio %s %v, want %v / %v", at, name, pair[0], pair[1], pair[2]))
			}
		}
	}
	for _, bin := range []string{"terrane-cni", "ptp", "host-local"} {
		bad = append(bad, checkLatency(bin+" start-up", r.Startup[bin], startupRuns)...)
	}
	if len(r.Startup) != 3 {
		bad = append(bad, fmt.Sprintf("start-up of %d plugins, want 3", len(r.Startup)))
	}
	if len(r.Goals) != 2*len(conc) {
		bad = append(bad, fmt.Sprintf("%d goals, want %d", len(r.Goals), 2*len(conc)))
	} else {
		for i, run := range r.Runs {
			g50, g99 := r.Goals[2*i], r.Goals[2*i+1]
			if g50.Ratio != run.Ratio.AddP50 || g50.Met != (run.Ratio.AddP50 <= 1.0) ||
				g99.Ratio != run.Ratio.AddP99 || g99.Met != (run.Ratio.AddP99 <= 1.2) {
				bad = append(bad, fmt.Sprintf("concurrency %d: goals %+v %+v do not follow the ratios %+v", run.Concurrency, g50, g99, run.Ratio))
			}
		}
	}
	return bad
}

// checkThroughputResult reports what is implausible about a throughput
// result of rounds rounds.
func checkThroughputResult(r *ThroughputResult, rounds int) []string {
	var bad []string
	med := map[string]float64{}
	kinds := []string{KindRouted, KindHost, KindVXLAN}
	if len(r.Paths) != len(kinds) {
		return append(bad, fmt.Sprintf("%d paths, want %d", len(r.Paths), len(kinds)))
	}
	for i, p := range r.Paths {
		if p.Kind != kinds[i] {
			bad = append(bad, fmt.Sprintf("path %d is %q, want %q", i, p.Kind, kinds[i]))
		}
		if len(p.Runs) != rounds {
			bad = append(bad, fmt.Sprintf("%s: %d runs, want %d", p.Kind, len(p.Runs), rounds))
		}
		var g []float64
		for j, run := range p.Runs {
			if !(run.Gbps > 0) || !(run.Seconds > 0) {
				bad = append(bad, fmt.Sprintf("%s run %d: %v Gbit/s over %v s, want both > 0", p.Kind, j, run.Gbps, run.Seconds))
			}
			g = append(g, run.Gbps)
		}
		if !(p.MedianGbps > 0) || !near(p.MedianGbps, median(g)) {
			bad = append(bad, fmt.Sprintf("%s: median %v Gbit/s, want %v (> 0), the median of %v", p.Kind, p.MedianGbps, median(g), g))
		}
		med[p.Kind] = p.MedianGbps
	}
	if med[KindHost] == 0 || !near(r.RoutedOverHost, med[KindRouted]/med[KindHost]) {
		bad = append(bad, fmt.Sprintf("routed/host %v, want %v / %v", r.RoutedOverHost, med[KindRouted], med[KindHost]))
	}
	if med[KindVXLAN] == 0 || !near(r.RoutedOverVXLAN, med[KindRouted]/med[KindVXLAN]) {
		bad = append(bad, fmt.Sprintf("routed/vxlan %v, want %v / %v", r.RoutedOverVXLAN, med[KindRouted], med[KindVXLAN]))
	}
	seq := []float64{}
	for i := range min(len(r.Paths[0].Runs), len(r.Paths[1].Runs)) {
		seq = append(seq, r.Paths[0].Runs[i].Gbps/r.Paths[1].Runs[i].Gbps)
	}
	bad = append(bad, checkRatioStats("sequential routed/host", r.Sequential.RoutedOverHost, seq, rounds)...)
	if r.PairedRoutedOverHost != r.Sequential.RoutedOverHost.Median || r.PairedRoutedOverVXLAN != r.Sequential.RoutedOverVXLAN.Median {
		bad = append(bad, fmt.Sprintf("paired ratios %v, %v differ from the sequential medians %+v", r.PairedRoutedOverHost, r.PairedRoutedOverVXLAN, r.Sequential))
	}
	bad = append(bad, checkShared(&r.Shared, rounds)...)
	if len(r.Goals) != 4 || r.Goals[0].Met != (r.RoutedOverHost >= 0.95) || r.Goals[1].Met != (r.RoutedOverVXLAN >= 1.03) ||
		r.Goals[0].Ratio != r.RoutedOverHost || r.Goals[1].Ratio != r.RoutedOverVXLAN ||
		r.Goals[2].Ratio != r.Shared.RoutedOverHost.Median || r.Goals[2].Met != (r.Shared.RoutedOverHost.Median >= 0.95) ||
		r.Goals[3].Ratio != r.Shared.RoutedOverVXLAN.Median || r.Goals[3].Met != (r.Shared.RoutedOverVXLAN.Median >= 1.03) ||
		r.Goals[2].CI95 == nil || *r.Goals[2].CI95 != r.Shared.RoutedOverHost.CI95 {
		bad = append(bad, fmt.Sprintf("goals %+v do not follow the ratios %v, %v and the shared %+v", r.Goals, r.RoutedOverHost, r.RoutedOverVXLAN, r.Shared.RatioPair))
	}
	return bad
}

// checkRatioStats reports what is implausible about a ratio's statistics;
// want, when not nil, are the per-round ratios it should hold.
func checkRatioStats(what string, s RatioStats, want []float64, rounds int) []string {
	var bad []string
	if len(s.Rounds) != rounds {
		bad = append(bad, fmt.Sprintf("%s: %d rounds, want %d", what, len(s.Rounds), rounds))
	}
	for i, x := range s.Rounds {
		if !(x > 0) || math.IsInf(x, 0) || (want != nil && (i >= len(want) || !near(x, want[i]))) {
			bad = append(bad, fmt.Sprintf("%s: round %d ratio %v, want > 0 and %v", what, i, x, want))
		}
	}
	if !near(s.Median, median(s.Rounds)) || !(s.Median > 0) {
		bad = append(bad, fmt.Sprintf("%s: median %v, want %v > 0", what, s.Median, median(s.Rounds)))
	}
	if !(s.CI95[0] <= s.Median && s.Median <= s.CI95[1]) || !(s.CI95[0] > 0) {
		bad = append(bad, fmt.Sprintf("%s: CI %v does not hold the median %v", what, s.CI95, s.Median))
	}
	return bad
}

// checkShared reports what is implausible about the shared-CPU phase.
func checkShared(s *SharedCPU, rounds int) []string {
	var bad []string
	kinds := []string{KindRouted, KindHost, KindVXLAN}
	if len(s.Paths) != len(kinds) {
		return append(bad, fmt.Sprintf("shared: %d paths, want %d", len(s.Paths), len(kinds)))
	}
	if s.ClientCPU < 0 || s.ServerCPU < 0 {
		bad = append(bad, fmt.Sprintf("shared: CPUs %d, %d", s.ClientCPU, s.ServerCPU))
	}
	for i, p := range s.Paths {
		if p.Kind != kinds[i] {
			bad = append(bad, fmt.Sprintf("shared path %d is %q, want %q", i, p.Kind, kinds[i]))
		}
		if len(p.Runs) != rounds {
			bad = append(bad, fmt.Sprintf("shared %s: %d runs, want %d", p.Kind, len(p.Runs), rounds))
		}
		for j, run := range p.Runs {
			if !(run.Gbps > 0) || !(run.Seconds > 0) {
				bad = append(bad, fmt.Sprintf("shared %s run %d: %v Gbit/s over %v s, want both > 0", p.Kind, j, run.Gbps, run.Seconds))
			}
		}
		if !(p.MedianGbps > 0) || !near(p.MedianGbps, median(gbps(p.Runs))) {
			bad = append(bad, fmt.Sprintf("shared %s: median %v Gbit/s, want the median of %v", p.Kind, p.MedianGbps, gbps(p.Runs)))
		}
	}
	perHost, perVXLAN := []float64{}, []float64{}
	for i := range min(len(s.Paths[0].Runs), len(s.Paths[1].Runs), len(s.Paths[2].Runs)) {
		perHost = append(perHost, s.Paths[0].Runs[i].Gbps/s.Paths[1].Runs[i].Gbps)
		perVXLAN = append(perVXLAN, s.Paths[0].Runs[i].Gbps/s.Paths[2].Runs[i].Gbps)
	}
	bad = append(bad, checkRatioStats("shared routed/host", s.RoutedOverHost, perHost, rounds)...)
	bad = append(bad, checkRatioStats("shared routed/vxlan", s.RoutedOverVXLAN, perVXLAN, rounds)...)
	return bad
}

// The checks the smoke tests rely on catch broken results.
func TestResultChecksFail(t *testing.T) {
	lat := Latency{N: 2, P50: 1, P90: 2, P99: 2, Mean: 1.5, Min: 1, Max: 2}
	good := &CNIResult{N: 2, Runs: []CNIRun{{Concurrency: 1,
		Terrane: PluginLatency{Add: lat, Del: lat}, Upstream: PluginLatency{Add: lat, Del: lat},
		Ratio: CNIRatios{AddP50: 1, AddP99: 1, DelP50: 1, DelP99: 1}}},
		Goals: []Goal{atMost("a", 1, 1.0), atMost("b", 1, 1.2)}}
	startup := Latency{N: startupRuns, P50: 1, P90: 2, P99: 2, Mean: 1.5, Min: 1, Max: 2}
	good.Startup = map[string]Latency{"terrane-cni": startup, "ptp": startup, "host-local": startup}
	if bad := checkCNIResult(good, 2, []int{1}); len(bad) > 0 {
		t.Fatalf("a sane result fails: %v", bad)
	}
	for name, breakIt := range map[string]func(r *CNIResult){
		"zero latency":      func(r *CNIResult) { r.Runs[0].Terrane.Del.Mean = 0 },
		"p99 below p50":     func(r *CNIResult) { r.Runs[0].Upstream.Add.P99 = 0.5 },
		"ratio not derived": func(r *CNIResult) { r.Runs[0].Ratio.AddP99 = 0.9 },
		"samples missing":   func(r *CNIResult) { r.Runs[0].Terrane.Add.N = 1 },
		"goal wrong":        func(r *CNIResult) { r.Goals[0].Met = false },
		"start-up missing":  func(r *CNIResult) { delete(r.Startup, "ptp") },
	} {
		r := *good
		r.Runs = []CNIRun{good.Runs[0]}
		r.Goals = append([]Goal(nil), good.Goals...)
		r.Startup = maps.Clone(good.Startup)
		breakIt(&r)
		if len(checkCNIResult(&r, 2, []int{1})) == 0 {
			t.Errorf("CNI %s: not caught", name)
		}
	}

	path := func(kind string, g ...float64) Path {
		p := Path{Kind: kind, MedianGbps: median(g)}
		for _, x := range g {
			p.Runs = append(p.Runs, IperfRun{Gbps: x, Seconds: 1})
		}
		return p
	}
	shared := func(kind string, g ...float64) SharedPath {
		p := path(kind, g...)
		return SharedPath{Kind: kind, MedianGbps: p.MedianGbps, Runs: p.Runs}
	}
	tgood := func() *ThroughputResult {
		r := &ThroughputResult{Paths: []Path{path(KindRouted, 9, 10), path(KindHost, 10, 10), path(KindVXLAN, 8, 8)}}
		r.RoutedOverHost, r.RoutedOverVXLAN = 9.5/10, 9.5/8
		r.Sequential = roundRatios(r.Paths[0].Runs, r.Paths[1].Runs, r.Paths[2].Runs)
		r.PairedRoutedOverHost, r.PairedRoutedOverVXLAN = r.Sequential.RoutedOverHost.Median, r.Sequential.RoutedOverVXLAN.Median
		r.Shared = SharedCPU{ClientCPU: 0, ServerCPU: 1, Paths: []SharedPath{shared(KindRouted, 3, 3.2), shared(KindHost, 3.5, 3.6), shared(KindVXLAN, 2.5, 2.9)}}
		r.Shared.RatioPair = roundRatios(r.Shared.Paths[0].Runs, r.Shared.Paths[1].Runs, r.Shared.Paths[2].Runs)
		r.Goals = throughputGoals(r)
		return r
	}
	if bad := checkThroughputResult(tgood(), 2); len(bad) > 0 {
		t.Fatalf("a sane result fails: %v", bad)
	}
	for name, breakIt := range map[string]func(r *ThroughputResult){
		"zero rate":         func(r *ThroughputResult) { r.Paths[1].Runs[0].Gbps = 0 },
		"median wrong":      func(r *ThroughputResult) { r.Paths[0].MedianGbps = 9 },
		"ratio not derived": func(r *ThroughputResult) { r.RoutedOverVXLAN = 1 },
		"path missing":      func(r *ThroughputResult) { r.Paths = r.Paths[:2] },
		"round missing":     func(r *ThroughputResult) { r.Paths[2].Runs = r.Paths[2].Runs[:1] },
		"paired not median": func(r *ThroughputResult) { r.PairedRoutedOverHost = 0.5 },
		"shared zero rate":  func(r *ThroughputResult) { r.Shared.Paths[2].Runs[1].Gbps = 0 },
		"shared missing":    func(r *ThroughputResult) { r.Shared = SharedCPU{} },
		"shared round lost": func(r *ThroughputResult) { r.Shared.Paths[0].Runs = r.Shared.Paths[0].Runs[:1] },
		"CI misses median":  func(r *ThroughputResult) { r.Shared.RoutedOverVXLAN.CI95 = [2]float64{1.2, 1.3} },
		"shared ratio off":  func(r *ThroughputResult) { r.Shared.RoutedOverHost.Rounds[0] = 1 },
		"shared goal wrong": func(r *ThroughputResult) { r.Goals[3].Met = !r.Goals[3].Met },
		"goals missing":     func(r *ThroughputResult) { r.Goals = r.Goals[:2] },
	} {
		r := tgood()
		breakIt(r)
		if len(checkThroughputResult(r, 2)) == 0 {
			t.Errorf("throughput %s: not caught", name)
		}
	}
}
