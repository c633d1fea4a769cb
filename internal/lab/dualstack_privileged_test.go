package lab

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPrivilegedLabDualStack: the dual-stack scenario comes up on a
// dual-stack underlay; every pod has an IPv4 and an IPv6 address, every
// ordered pair of pods reaches each other over both families (TCP and
// ICMP, each result carrying its family), and each host routes its peer's
// IPv6 blocks via the peer's IPv6 address.
func TestPrivilegedLabDualStack(t *testing.T) {
	requireRoot(t)
	n := testLab(t)
	st := upScenario(t, n, "dual-stack")
	t.Cleanup(func() { _, _ = Down(t.Context(), DownOptions{Name: n.Lab, Dir: n.Dir}) })
	targets := st.Targets()
	for _, tg := range targets {
		if !tg.Addr.Is4() || !tg.Addr6.Is6() {
			t.Fatalf("pod %s has %s and %s, want an IPv4 and an IPv6 address", tg.Name, tg.Addr, tg.Addr6)
		}
	}
	rep, err := Probe(t.Context(), targets)
	if err != nil {
		t.Fatal(err)
	}
	requireAllReached(t, rep)
	perFamily := map[int]int{}
	for _, r := range rep.Results {
		perFamily[r.Family]++
	}
	pairs := len(targets) * (len(targets) - 1)
	if perFamily[4] != pairs || perFamily[6] != pairs {
		t.Fatalf("results per family %v, want %d of each of 4 and 6", perFamily, pairs)
	}
	for _, h := range st.Scenario.Hosts {
		if !h.IP6.IsValid() {
			t.Fatalf("host %s has no IPv6 address on the dual-stack segment", h.Name)
		}
	}
	h1, h2 := st.Scenario.Hosts[0], st.Scenario.Hosts[1]
	out, err := exec.Command("ip", "-n", n.Node(h1.Name), "-6", "route", "show", "table", "all").CombinedOutput()
	if err != nil {
		t.Fatalf("ip -6 route: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "via "+h2.IP6.String()) {
		t.Errorf("%s's IPv6 routes:\n%s\nwant a route via %s (%s's IPv6 address)", h1.Name, out, h2.IP6, h2.Name)
	}
	t.Logf("%s", rep.Matrix())
}
