package lab

import (
	"fmt"
	"maps"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/topology"
)

// pingEveryPair pings every target from every other every interval
// (Echoes). stop reports each pair that lost an echo (during says when,
// e.g. " across the restart") and returns how many pairs, echoes and
// unanswered echoes.
func pingEveryPair(t *testing.T, targets []ProbeTarget, interval time.Duration) (stop func(during string) (pairs, sent, lost int)) {
	var all []*Echoes
	for _, from := range targets {
		for _, to := range targets {
			if from.Name == to.Name {
				continue
			}
			e, err := StartEchoes(t.Context(), from, to, interval)
			if err != nil {
				t.Fatalf("%s → %s: %v", from.Name, to.Name, err)
			}
			all = append(all, e)
		}
	}
	return func(during string) (pairs, sent, lost int) {
		for _, e := range all {
			e.Stop()
		}
		for _, e := range all {
			l, longest := e.Lost()
			sent += e.Sent()
			lost += l
			if l > 0 {
				t.Errorf("%s → %s: %d of %d echoes unanswered%s, %d in a row (%d ms)", e.From.Name, e.To.Name, l, e.Sent(), during, longest, longest*int(interval/time.Millisecond))
			}
		}
		return len(all), sent, lost
	}
}

// TestPrivilegedLabVPCMakeBeforeBreak: in aws-3zone (12 hosts, a VPC table
// of 8 routes), every pod pings every other every 20 ms while the table
// changes under it — two hosts without pods get their first ones and a
// third fills block after block (claims that reshape which zones are
// aggregated and how), then a host without pods is lost (its agent killed,
// the host removed, its blocks released) and joins again (its agent
// restarted: it registers and claims ahead), then the host an aggregate
// points at fails over (its agent killed: the aggregate moves to a healthy
// host of its zone) — and not one echo between pods that exist throughout
// goes unanswered: every change was made before it broke anything.
func TestPrivilegedLabVPCMakeBeforeBreak(t *testing.T) {
	requireRoot(t)
	n := testLab(t)
	st := upScenario(t, n, "aws-3zone")
	vr, _ := st.Scenario.VPCRouter()
	before := vpcKernel(t, st, vr.Name)
	status0, err := ReadVPCStatus(n)
	if err != nil {
		t.Fatal(err)
	}

	stopPinging := pingEveryPair(t, st.Targets(), 20*time.Millisecond)

	// Fill: first pods on a-3 and b-2, then a-1 block after block.
	var added []string
	add := func(name, host string) {
		if _, err := AddPod(t.Context(), n.Lab, n.Dir, Pod{Name: name, Host: host}); err != nil {
			t.Fatal(err)
		}
		added = append(added, name)
	}
	add("fa3", "a-3")
	add("fb2", "b-2")
	for i := range 24 {
		add(fmt.Sprintf("fa1-%d", i), "a-1")
	}
	filled := vpcKernel(t, st, vr.Name)

	// A host lost: c-3 carries no pod; its agent dies and it is removed.
	st = reload(t, n)
	for _, p := range st.Processes {
		if p.Role == "agent" && p.Node == "c-3" {
			if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	c, err := AdminClient(n)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	if _, err := c.RemoveHost(t.Context(), "c-3"); err != nil {
		t.Fatal(err)
	}
	if err := WaitVPC(t.Context(), st, c); err != nil {
		t.Fatal(err)
	}
	removed := vpcKernel(t, st, vr.Name)

	// A host joins: c-3's agent starts again, registers and claims ahead.
	st = reload(t, n)
	h, _ := st.Scenario.Host("c-3")
	d, err := startAgent(t.Context(), st, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitAgent(t.Context(), st.names(), d); err != nil {
		t.Fatal(err)
	}
	if err := WaitVPC(t.Context(), st, c); err != nil {
		t.Fatal(err)
	}
	after := vpcKernel(t, st, vr.Name)

	// Fail over: the host an aggregate points at stops checking in (its
	// agent killed; its kernel still forwards, as a host whose agent
	// crashed does). Once its heartbeat is older than the table's
	// heartbeatTimeout the reconciler moves the aggregate to a healthy host
	// of its zone, with one replace.
	snap, err := c.Snapshot(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	topo, err := topology.Load([]byte(snap.Topology))
	if err != nil {
		t.Fatal(err)
	}
	in := routing.InputFrom(topo.Networks[0], snap.Hosts, snap.Blocks[topo.Networks[0].Name], snap.Groups[topo.Networks[0].Name], nil)
	hostAt := map[netip.Addr]string{}
	for _, h := range st.Scenario.Hosts {
		hostAt[h.IP] = h.Name
	}
	var agg netip.Prefix
	var target string
	for _, r := range routing.VPCTable(in, vr.VPC.Budget).Routes {
		if via, ok := after[r.Dst]; ok && r.Group != "" {
			agg, target = r.Dst, hostAt[via]
			break
		}
	}
	if target == "" {
		t.Fatalf("no aggregate in the table %v to fail over", after)
	}
	for _, p := range reload(t, n).Processes {
		if p.Role == "agent" && p.Node == target {
			if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	failed := time.Now()
	var movedTo string
	for deadline := failed.Add(2 * time.Minute); movedTo == "" || movedTo == target; time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("aggregate %s still on %s two minutes after its agent died", agg, target)
		}
		if via, ok := vpcKernel(t, st, vr.Name)[agg]; ok {
			movedTo = hostAt[via]
		}
	}
	failover := time.Since(failed)
	pairs, sent, lost := stopPinging("")

	status, err := ReadVPCStatus(n)
	if err != nil {
		t.Fatal(err)
	}
	changes := status.Changes - status0.Changes
	if maps.Equal(before, filled) || maps.Equal(filled, removed) || maps.Equal(removed, after) {
		t.Fatalf("the table did not change at every phase under the probes (%d calls; before %v, filled %v, c-3 removed %v, c-3 back %v): the test proves less than it says", changes, before, filled, removed, after)
	}
	if status.MaxRoutes > vr.VPC.Budget {
		t.Errorf("the table held %d routes, over its budget %d", status.MaxRoutes, vr.VPC.Budget)
	}
	if lost > 0 {
		for _, p := range reload(t, n).Processes {
			if p.Role == "vpcd" {
				t.Logf("vpcd log:\n%s", tail(p.Log, 60))
			}
		}
	}
	t.Logf("aggregate %s failed over from %s to %s %.1f s after %s's agent died", agg, target, movedTo, failover.Seconds(), target)
	t.Logf("%d pods added (%v…), host c-3 removed and back; the reconciler made %d calls (table %d → %d → %d → %d routes); %d pairs, %d echoes, %d unanswered",
		len(added), added[:2], changes, len(before), len(filled), len(removed), len(after), pairs, sent, lost)
}
