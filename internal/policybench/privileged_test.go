package policybench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/policy/policygen"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to make network namespaces, nftables tables and iptables chains; run `go test` as root")
	}
	if err := CheckEnvironment("iptables-legacy"); err != nil {
		t.Skipf("privileged test: %v", err)
	}
}

// ourNetns lists the benchmark's namespaces.
func ourNetns(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), NetnsPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestPrivilegedPolicyBench runs the benchmark briefly with the command's
// rule counts and checks its structure and sanity, not its timings: every
// configuration measured, the kernel holding exactly the rules rendered,
// a port no rule admits blocked exactly when a policy is on, and nothing
// left behind.
func TestPrivilegedPolicyBench(t *testing.T) {
	requireRoot(t)
	before := ourNetns(t)
	o := DefaultOptions()
	o.Duration, o.Rounds, o.SyncReps = time.Second, 1, 2
	o.Progress = t.Logf
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if left := ourNetns(t); len(left) != len(before) {
		t.Errorf("namespaces left behind: %v (before: %v)", left, before)
	}
	lo, hi := o.Rules[0], o.Rules[1]
	want := []struct {
		name    string
		applied int
	}{
		{"none", 0},
		// Per direction, a set element per decoy rule and one for the
		// pair's two adjacent ports (merged).
		{fmt.Sprintf("nft-%d", lo), 2 * lo}, {fmt.Sprintf("nft-%d", hi), 2 * hi},
		// Per direction, a rule per decoy rule and one per pair port.
		{fmt.Sprintf("iptables-%d", lo), 2 * (lo + 1)}, {fmt.Sprintf("iptables-%d", hi), 2 * (hi + 1)},
	}
	if len(res.Configs) != len(want) {
		t.Fatalf("%d configurations, want %d: %+v", len(res.Configs), len(want), res.Configs)
	}
	for i, w := range want {
		c := res.Configs[i]
		if c.Name != w.name || c.Applied != w.applied {
			t.Errorf("configuration %d: %s with %d in the kernel, want %s with %d", i, c.Name, c.Applied, w.name, w.applied)
		}
		if c.DeniedPortBlocked != (c.Dataplane != "none") {
			t.Errorf("%s: denied port blocked %v", c.Name, c.DeniedPortBlocked)
		}
		if !(c.Gbps.Median > 0) || !(c.ConnPerSec.Median > 0) || len(c.Gbps.Rounds) != o.Rounds {
			t.Errorf("%s: %v Gbit/s, %v connections/s over %d rounds: want positive figures of %d rounds", c.Name, c.Gbps.Median, c.ConnPerSec.Median, len(c.Gbps.Rounds), o.Rounds)
		}
		if conns := c.ConnPerSec.Median * o.Duration.Seconds(); float64(c.ConnFailures) > conns/100 {
			t.Errorf("%s: %d connections to an admitted port failed, of about %.0f", c.Name, c.ConnFailures, conns)
		}
	}
	if len(res.Ratios) != 4 {
		t.Errorf("%d ratios, want 4", len(res.Ratios))
	}
	for _, r := range res.Ratios {
		if !(r.Gbps.Median > 0) || !(r.ConnPerSec.Median > 0) {
			t.Errorf("ratio %s: %v, %v", r.Name, r.Gbps.Median, r.ConnPerSec.Median)
		}
	}
	s := res.Sync
	if s.Pods != policygen.BigPods || s.Policies != policygen.BigPolicies || s.NodePods != policygen.BigPodsPerNode ||
		s.Isolated == 0 || s.Elements == 0 || s.ChangedEndpoints == 0 {
		t.Errorf("sync: %+v", s)
	}
	for name, x := range map[string]Sample{"compile": s.CompileMs, "apply": s.ApplyMs, "incremental compile": s.IncCompileMs, "incremental apply": s.IncApplyMs} {
		if !(x.Median > 0) || len(x.Rounds) != o.SyncReps {
			t.Errorf("sync %s: %+v", name, x)
		}
	}
}

// TestPrivilegedPolicyBenchCancelled: cancelled in the middle of a
// measurement (Ctrl-C), the benchmark returns the cancellation and
// deletes its namespaces, iperf3 server included.
func TestPrivilegedPolicyBenchCancelled(t *testing.T) {
	requireRoot(t)
	before := ourNetns(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := DefaultOptions()
	o.Rules = [2]int{1, 2}
	o.Duration = 2 * time.Second
	var once sync.Once
	o.Progress = func(format string, args ...any) {
		t.Logf(format, args...)
		// After the first configuration's measurement: cancel during the
		// second's.
		if strings.HasPrefix(format, "round") {
			once.Do(func() { time.AfterFunc(500*time.Millisecond, cancel) })
		}
	}
	start := time.Now()
	_, err := Run(ctx, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run cancelled: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("Run took %s to return after the cancellation", d)
	}
	if left := ourNetns(t); len(left) != len(before) {
		t.Errorf("namespaces left behind: %v (before: %v)", left, before)
	}
}
