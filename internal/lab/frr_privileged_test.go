package lab

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func requireFRR(t testing.TB) {
	t.Helper()
	requireRoot(t)
	if err := CheckFRR(); err != nil {
		t.Skipf("privileged FRR test: %v", err)
	}
}

// l3-frr from the real binaries, FRR on both ToRs: every pod reaches every
// pod across the racks through routes FRR learned over BGP; each router's
// FRR table is exactly what the server's state makes the hosts announce
// (the routing core's set, expectedBird, the one BIRD is held to) and its
// kernel's main table exactly FRR's chosen routes. Then graceful restart:
// r1-host-1's agent is killed (SIGKILL: no Cease), tor-1 keeps its routes
// marked stale (tor-2 keeps them too), every pod pair keeps reaching —
// probed round after round throughout — and the restarted agent
// re-establishes, announces again and clears the stale marks, the tables
// back to the expected set.
func TestPrivilegedLabFRR(t *testing.T) {
	requireFRR(t)
	n, st, c := upRoutedLab(t, "l3-frr", 10*time.Second)
	ctx := t.Context()
	for _, r := range []string{"tor-1", "tor-2"} {
		bs, err := ReadFRR(ctx, st, r)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range bs.Protocols {
			if !p.Established() {
				t.Errorf("%s: session %s is %s", r, p.Name, p.Info)
			}
		}
		if r == "tor-2" {
			t.Logf("lab routes %s (FRR part):\n%s", r, bs.Text())
		}
	}

	// Every pod pings every other every 20 ms until the restart is over.
	stopPinging := pingEveryPair(t, st.Targets(), 20*time.Millisecond)

	gone := "r1-host-1"
	h, _ := st.Scenario.Host(gone)
	before, err := ReadFRR(ctx, st, "tor-1")
	if err != nil {
		t.Fatal(err)
	}
	var announced []string // what the host's agent announced, as tor-1 holds it
	for _, r := range before.Routes {
		if slices.Contains(r.Via, h.IP) {
			announced = append(announced, r.Prefix.String())
		}
	}
	if len(announced) == 0 {
		t.Fatalf("tor-1 learned nothing from %s:\n%s", gone, before.Text())
	}
	agent := slices.IndexFunc(st.Processes, func(p Process) bool { return p.Role == "agent" && p.Node == gone })
	if err := syscall.Kill(st.Processes[agent].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// tor-1 sees the session drop and keeps the routes, marked stale.
	eventually(t, 15*time.Second, func() string {
		bs, err := ReadFRR(ctx, st, "tor-1")
		if err != nil {
			return err.Error()
		}
		up := slices.ContainsFunc(bs.Protocols, func(p BirdProtocol) bool {
			return p.Name == birdProtocol(birdHostPrefix, gone) && p.Established()
		})
		var stale []string
		for _, r := range bs.Routes {
			if slices.Contains(r.Via, h.IP) && r.Stale {
				stale = append(stale, r.Prefix.String())
			}
		}
		if up || !slices.Equal(stale, announced) {
			return fmt.Sprintf("tor-1 after the kill: session up %v, stale routes %v, want %v down with %v stale:\n%s", up, stale, announced, announced, bs.Text())
		}
		return ""
	})
	t.Logf("tor-1 marked %s's routes %v stale %s after the kill", gone, announced, time.Since(killed).Round(time.Millisecond))
	for _, r := range []string{"tor-1", "tor-2"} {
		kernel := kernelTable(t, st, r, "main", "bgp")
		for _, p := range announced {
			if !slices.ContainsFunc(kernel, func(l string) bool { return strings.HasPrefix(l, p+" ") }) {
				t.Errorf("%s's kernel lost %s while %s's agent is down: %v", r, p, gone, kernel)
			}
		}
	}
	got, err := birdAll(ctx, st, "tor-2")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range announced {
		if !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, p+" via 172.31.255.1 ") }) {
			t.Errorf("tor-2 lost %s while %s's agent is down: %v", p, gone, got)
		}
	}

	// The agent comes back within the restart time.
	st = reload(t, n)
	d, err := startAgent(ctx, st, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitAgent(ctx, st.names(), d); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string {
		bs, err := ReadFRR(ctx, st, "tor-1")
		if err != nil {
			return err.Error()
		}
		for _, r := range bs.Routes {
			if r.Stale {
				return fmt.Sprintf("tor-1 still holds stale %s", r)
			}
		}
		for _, p := range bs.Protocols {
			if !p.Established() {
				return fmt.Sprintf("tor-1's session %s is %s", p.Name, p.Info)
			}
		}
		return ""
	})
	t.Logf("%s's restarted agent re-established and refreshed tor-1 %s after the kill", gone, time.Since(killed).Round(time.Millisecond))
	requireBirdTables(t, st, c, 15*time.Second)
	pairs, sent, lost := stopPinging(" across the agent's kill and restart")
	t.Logf("%d pairs, %d echoes every 20 ms across the agent's kill and restart, %d unanswered", pairs, sent, lost)
	rep, err := Probe(ctx, st.Targets())
	if err != nil {
		t.Fatal(err)
	}
	requireAllReached(t, rep)
}
