package plan

import (
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/topology"
	"github.com/terrane-net/terrane/internal/usage"
)

func loadExample(t testing.TB, name string) *topology.Topology {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	topo, err := topology.Load(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return topo
}

func examples(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "*.*"))
	if err != nil || len(files) < 10 {
		t.Fatalf("want the 10 shipped examples, got %d (%v)", len(files), err)
	}
	var out []string
	for _, f := range files {
		if strings.HasSuffix(f, ".yaml") || strings.HasSuffix(f, ".json") {
			out = append(out, filepath.Base(f))
		}
	}
	return out
}

// TestExamplesFillElastic plans every shipped example to exhaustion with 80%
// of endpoints in one leaf group: elastic planning must use at least 99% of
// every network within the default route budgets, cloud route tables
// included (docs/benchmarks.md).
func TestExamplesFillElastic(t *testing.T) {
	for _, name := range examples(t) {
		t.Run(name, func(t *testing.T) {
			topo := loadExample(t, name)
			rep, err := Run(topo, nil, Options{Mode: ipam.Elastic, Fill: true, Skew: 0.8, Budgets: ipam.Budgets{VPC: DefaultVPCBudget}})
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range rep.Networks {
				if n.OverBudget && n.Routes.VPCBudget == 0 {
					t.Errorf("network %s: over a budget that is not the vpc one: %s", n.Name, n.FirstFailure)
				}
				if n.UsableShare < 0.99 {
					t.Errorf("network %s: usable share %.4f < 0.99 (first failure: %s)", n.Name, n.UsableShare, n.FirstFailure)
				}
				if n.FirstFailure == "" {
					t.Errorf("network %s: --fill ended without a failure", n.Name)
				}
				if n.Routes.VPCBudget > 0 && n.Routes.VPC > n.Routes.VPCBudget {
					t.Errorf("network %s: %d vpc routes over budget %d", n.Name, n.Routes.VPC, n.Routes.VPCBudget)
				}
				checkOptimal(t, n)
				var sum uint64
				for _, g := range n.Groups {
					if g.Hosts > 0 && len(g.Prefixes) == 0 {
						t.Errorf("group %s has hosts but no prefix", g.Path)
					}
					if !strings.Contains(g.Path, "/") {
						sum += g.Allocated
					}
				}
				if sum != n.Allocated {
					t.Errorf("network %s: top-level groups hold %d addresses, network %d", n.Name, sum, n.Allocated)
				}
			}
		})
	}
}

// TestStaticPaddingNeverAssigned checks Romana's split with padding: with 3
// groups, the fourth quarter of the network stays unused in static mode.
func TestStaticPaddingNeverAssigned(t *testing.T) {
	rep, err := Run(loadExample(t, "aws-3zone.yaml"), nil, Options{Mode: ipam.Static, Fill: true})
	if err != nil {
		t.Fatal(err)
	}
	n := rep.Networks[0]
	if n.UsableShare > 0.75 {
		t.Fatalf("static usable share %.3f: padding must never be assigned (at most 0.75 with 3 of 4 slots)", n.UsableShare)
	}
	padding := netip.MustParsePrefix("10.30.192.0/18")
	for _, g := range n.Groups {
		for _, p := range g.Prefixes {
			if netip.MustParsePrefix(p).Overlaps(padding) {
				t.Errorf("group %s owns %s inside the padding slot %s", g.Path, p, padding)
			}
		}
	}
}

func TestPodsPerHostFitsAndOverflows(t *testing.T) {
	topo := loadExample(t, "flat-l2.yaml")
	rep, err := Run(topo, nil, Options{PodsPerHost: 100})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Fits || rep.Networks[0].Allocated != 100 {
		t.Fatalf("100 pods on one host: fits=%v allocated=%d errors=%v", rep.Fits, rep.Networks[0].Allocated, rep.Errors)
	}
	rep, err = Run(topo, nil, Options{PodsPerHost: 70000})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Fits || !strings.Contains(strings.Join(rep.Errors, " "), "exhausted") {
		t.Fatalf("70000 pods in a /16 must not fit: %+v", rep.Errors)
	}
}

// checkOptimal: the host and ToR levels emit their optimum, and the VPC
// table never has fewer routes than its optimum.
func checkOptimal(t *testing.T, n usage.NetworkReport) {
	t.Helper()
	r := n.Routes
	if r.HostMax != r.HostMaxOptimal || r.BGP != r.BGPOptimal || r.VPC < r.VPCFloor {
		t.Errorf("network %s: routes %+v: want host_max = host_max_optimal, bgp = bgp_optimal, vpc >= vpc_floor", n.Name, r)
	}
}

// TestExamplesRoutesAtOptimum: on every shipped example, with a VPC budget
// too small to fit, the VPC table is its optimum, and every level emits
// exactly as many routes as its optimum (emitted ÷ optimal = 1.00).
func TestExamplesRoutesAtOptimum(t *testing.T) {
	for _, name := range examples(t) {
		t.Run(name, func(t *testing.T) {
			rep, err := Run(loadExample(t, name), nil, Options{Mode: ipam.Elastic, PodsPerHost: 40, Skew: 0.8, Budgets: ipam.Budgets{VPC: 1}})
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range rep.Networks {
				checkOptimal(t, n)
				if r := n.Routes; r.VPC != r.VPCFloor {
					t.Errorf("network %s: vpc %d routes over a budget of 1, optimum %d", n.Name, r.VPC, r.VPCFloor)
				}
			}
		})
	}
}

// TestVPCBudgetExceeded: 24 subnets with hosts and a budget of 2 routes
// cannot all be served (each populated subnet is a route of its own). The
// allocator refuses the third subnet's first block before handing it out:
// the table never exceeds the budget, and the plan names the group that
// pays.
func TestVPCBudgetExceeded(t *testing.T) {
	rep, err := Run(loadExample(t, "aws-3zone.yaml"), nil, Options{PodsPerHost: 5, Budgets: ipam.Budgets{VPC: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Fits {
		t.Fatal("a 2-route budget for 24 subnets must not fit")
	}
	n := rep.Networks[0]
	if got := n.Routes; got.VPC > 2 || got.VPCFloor > 2 {
		t.Fatalf("routes %+v: the table went over its budget of 2", got)
	}
	if !n.OverBudget || n.BudgetGroup != "us-east-1a/subnet-3" || n.BudgetTarget != "vpc" {
		t.Fatalf("over budget %v, group %q, target %q: want us-east-1a/subnet-3 to pay for the vpc budget (first failure: %s)", n.OverBudget, n.BudgetGroup, n.BudgetTarget, n.FirstFailure)
	}
	if !strings.Contains(n.FirstFailure, "first block for group us-east-1a/subnet-3") || !strings.Contains(n.FirstFailure, "budget of 2") {
		t.Fatalf("first failure %q: want it to name the group and the budget", n.FirstFailure)
	}
	if n.Blocks != 2 {
		t.Fatalf("%d blocks: want exactly the two subnets the budget serves", n.Blocks)
	}
}

func TestHostAdmittedByNoGroupIsAnError(t *testing.T) {
	hosts, err := ParseHosts([]byte(`[{name: stray, ip: 192.0.2.9, labels: {zone: nowhere}}]`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(loadExample(t, "aws-3zone.yaml"), hosts, Options{PodsPerHost: 1})
	if err == nil || !strings.Contains(err.Error(), "stray") || !strings.Contains(err.Error(), "no group admits") {
		t.Fatalf("want an error naming host stray, got %v", err)
	}
}

func TestSkewAppliesToPodsPerHost(t *testing.T) {
	rep, err := Run(loadExample(t, "l3-fabric-4rack.yaml"), nil, Options{PodsPerHost: 100, Skew: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	n := rep.Networks[0]
	if n.Allocated != 400 {
		t.Fatalf("allocated %d, want 4 hosts × 100", n.Allocated)
	}
	if g := n.Groups[0]; g.Path != "rack-1" || g.Allocated != 250 {
		t.Fatalf("rack-1 holds %d of 400, want 250 (half, plus a quarter of the rest)", g.Allocated)
	}
}

func TestRunRejectsBadOptions(t *testing.T) {
	topo := loadExample(t, "flat-l2.yaml")
	for _, o := range []Options{{Skew: math.NaN()}, {Skew: -0.1}, {Skew: 1.1}, {PodsPerHost: -1}} {
		if _, err := Run(topo, nil, o); err == nil {
			t.Errorf("Run accepted %+v", o)
		}
	}
	big := mustLoad(t, `
networks: [{name: big, cidr: 10.0.0.0/8, blockSize: 26}]
topologies: [{networks: [big], groups: [{name: g}]}]
`)
	if _, err := Run(big, nil, Options{Fill: true}); err == nil || !strings.Contains(err.Error(), "--pods-per-host") {
		t.Errorf("--fill on a /8: %v, want advice to use --pods-per-host", err)
	}
}

func mustLoad(t *testing.T, y string) *topology.Topology {
	t.Helper()
	topo, err := topology.Load([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func TestSkewSendsShareToFirstGroup(t *testing.T) {
	rep, err := Run(loadExample(t, "l3-fabric-4rack.yaml"), nil, Options{Fill: true, Skew: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	n := rep.Networks[0]
	var first uint64
	for _, g := range n.Groups {
		if g.Path == "rack-1" {
			first = g.Allocated
		}
	}
	// Half goes to rack-1 directly, a quarter of the rest too (4 racks).
	want := 0.5 + 0.5/4
	got := float64(first) / float64(n.Allocated)
	if got < want-0.01 || got > want+0.01 {
		t.Fatalf("rack-1 holds %.3f of endpoints, want %.3f", got, want)
	}
}

func TestParseHostsErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`[{name: a, ip: 10.0.0.1}, {name: a, ip: 10.0.0.2}]`, `hosts[1].name: "a" is already hosts[0]`},
		{`[{ip: 10.0.0.1}]`, "hosts[0].name: required"},
		{`[{name: a}]`, "hosts[0].ip: required"},
		{`[{name: a, ip: nope}]`, `hosts[0].ip: "nope" is not an IP address`},
		{`[{name: a, ip: 10.0.0.1}, {name: b, ip: 10.0.0.1}]`, "hosts[1].ip: 10.0.0.1 is already the address of hosts[0]"},
		{`[{name: a, ip: 10.0.0.1, colour: red}]`, "hosts[0].colour: unknown field"},
		{`[{name: a, ip: 10.0.0.1, labels: {"bad key!": x}}]`, `is not a valid label key`},
		{`[{name: a, ip: 10.0.0.1, labels: {rack: 1}}]`, "hosts[0].labels.rack: want a string"},
		{`[{name: a, ip: 10.0.0.1, labels: [rack]}]`, "hosts[0].labels: want an object"},
		{`[5]`, "hosts[0]: want an object"},
		{`{name: a}`, "want a list"},
		{`[]`, "the list is empty"},
		{``, "want a list"},
	} {
		_, err := ParseHosts([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseHosts(%s) = %v, want error containing %q", tc.in, err, tc.want)
		}
	}
	// All problems at once.
	_, err := ParseHosts([]byte(`[{name: a}, {ip: x}]`))
	if err == nil || strings.Count(err.Error(), "hosts[") != 3 {
		t.Errorf("want 3 problems reported together, got %v", err)
	}
}

func FuzzParseHosts(f *testing.F) {
	f.Add([]byte(`[{name: a, ip: 10.0.0.1, labels: {zone: a}}]`))
	f.Add([]byte(`- {name: b, ip: "fd00::1", labels: {k: v}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		hosts, err := ParseHosts(data)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, h := range hosts {
			if h.Name == "" || seen[h.Name] || !h.IP.IsValid() {
				t.Fatalf("accepted a host with no name, a duplicate name or no IP: %+v", hosts)
			}
			seen[h.Name] = true
		}
	})
}

// BenchmarkUsableShare reports, per example, the share of the network used
// at the first failure under --fill --skew 0.8, elastic and static side by
// side (docs/benchmarks.md).
func BenchmarkUsableShare(b *testing.B) {
	for _, name := range examples(b) {
		topo := loadExample(b, name)
		b.Run(name, func(b *testing.B) {
			var el, st float64
			for i := 0; i < b.N; i++ {
				for _, m := range []ipam.PlanMode{ipam.Elastic, ipam.Static} {
					rep, err := Run(topo, nil, Options{Mode: m, Fill: true, Skew: 0.8, Budgets: ipam.Budgets{VPC: DefaultVPCBudget}})
					if err != nil {
						b.Fatal(err)
					}
					share := 1.0
					for _, n := range rep.Networks {
						share = min(share, n.UsableShare)
					}
					if m == ipam.Elastic {
						el = share
					} else {
						st = share
					}
				}
			}
			b.ReportMetric(el, "elastic_share")
			b.ReportMetric(st, "static_share")
			b.ReportMetric(el/max(st, 1e-9), "elastic/static")
		})
	}
}

// TestRomanaDummyGroupAdmitsNoHost: Romana's padding groups must never take
// a host, whatever its labels (Romana's did, mixing zones).
func TestRomanaDummyGroupAdmitsNoHost(t *testing.T) {
	topo, err := topology.Load([]byte(`{"networks":[{"name":"n","cidr":"10.0.0.0/16","block_mask":28}],
 "topologies":[{"networks":["n"],"map":[{"name":"a","assignment":{"zone":"a"},"groups":[]},{"name":"pad","dummy":true,"groups":[]}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, labels := range []map[string]string{{}, {topology.DummyLabel: "true"}, {"zone": "b"}} {
		_, err := Run(topo, []ParsedHost{{Name: "h", Labels: labels}}, Options{PodsPerHost: 1})
		if err == nil || !strings.Contains(err.Error(), "no group admits") {
			t.Errorf("labels %v: want no group to admit the host, got %v", labels, err)
		}
	}
	rep, err := Run(topo, nil, Options{PodsPerHost: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Networks[0].Hosts != 1 {
		t.Fatalf("synthetic hosts: want 1 (none for the dummy group), got %d", rep.Networks[0].Hosts)
	}
}

// countingMeter records what Run tells its Meter, per network.
type countingMeter struct {
	totals, done []int
	steps        []string
}

func (m *countingMeter) SetTotal(n int) { m.totals = append(m.totals, n); m.done = append(m.done, 0) }
func (m *countingMeter) Step(f string, a ...any) {
	m.steps = append(m.steps, fmt.Sprintf(f, a...))
}
func (m *countingMeter) Add(n int) { m.done[len(m.done)-1] += n }

// TestRunMeter: the meter counts every endpoint allocated — all of them
// with --pods-per-host, up to the first failure of a fill, whose total is
// the network's size.
func TestRunMeter(t *testing.T) {
	top := loadExample(t, "flat-l2.yaml")
	m := &countingMeter{}
	rep, err := Run(top, nil, Options{PodsPerHost: 700, Meter: m})
	if err != nil {
		t.Fatal(err)
	}
	n := rep.Networks[0]
	if len(m.totals) != 1 || uint64(m.totals[0]) != n.Allocated || uint64(m.done[0]) != n.Allocated {
		t.Errorf("pods per host: totals %v done %v, want %d of %d", m.totals, m.done, n.Allocated, n.Allocated)
	}
	m = &countingMeter{}
	if rep, err = Run(top, nil, Options{Fill: true, Meter: m}); err != nil {
		t.Fatal(err)
	}
	n = rep.Networks[0]
	if len(m.totals) != 1 || uint64(m.totals[0]) != n.Capacity || uint64(m.done[0]) != n.Allocated {
		t.Errorf("fill: totals %v done %v, want %d of %d", m.totals, m.done, n.Allocated, n.Capacity)
	}
	if len(m.steps) != 2 || !strings.Contains(m.steps[0], "filling") || !strings.Contains(m.steps[1], "counting routes") {
		t.Errorf("steps %q", m.steps)
	}
}
