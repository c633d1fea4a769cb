//go:build linux

// Package e2e holds Terrane's end-to-end proofs: whole labs (server, agents,
// terrane-cni driven through libcni, routers) on real network namespaces.
// Every test is privileged (TestPrivileged*): it skips without root.
package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/lab"
	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/testbin"
	"github.com/terrane-net/terrane/internal/topology"
)

func TestMain(m *testing.M) { testbin.Main(m) }

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to build labs of network namespaces; run `go test` as root")
	}
	if err := lab.CheckEnvironment(); err != nil {
		t.Skip("privileged test: " + err.Error())
	}
}

// up brings a shipped scenario up as a lab of its own, removed when the
// test ends (even when it fails).
func up(t testing.TB, scenario string, agentArgs ...string) *lab.State {
	t.Helper()
	requireRoot(t)
	bin := testbin.Terrane(t)
	sc, _, err := lab.LoadScenario(scenario)
	if err != nil {
		t.Fatal(err)
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	name := "e2e" + hex.EncodeToString(b[:])
	dir := filepath.Join(os.TempDir(), "terrane-lab-"+name)
	t.Cleanup(func() {
		if _, err := lab.Down(context.Background(), lab.DownOptions{Name: name, Dir: dir}); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := lab.Up(ctx, lab.UpOptions{Name: name, Dir: dir, Scenario: sc, Terrane: filepath.Join(bin, "terrane"), AgentArgs: agentArgs})
	if err != nil {
		t.Fatalf("lab up %s: %v", scenario, err)
	}
	return st
}

// reload re-reads a lab's state (pods added or deleted since).
func reload(t *testing.T, st *lab.State) *lab.State {
	t.Helper()
	s, err := lab.LoadState(st.Name, st.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func probeAll(t *testing.T, st *lab.State) *lab.ProbeReport {
	t.Helper()
	rep, err := lab.Probe(context.Background(), st.Targets())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func requireFullReachability(t *testing.T, st *lab.State) {
	t.Helper()
	rep := probeAll(t, st)
	// One result per ordered pair and family both pods have (dual-stack
	// pods are probed over each).
	families := func(p lab.ProbeTarget) map[bool]bool {
		f := map[bool]bool{}
		for _, a := range []netip.Addr{p.Addr, p.Addr6} {
			if a.IsValid() {
				f[a.Unmap().Is4()] = true
			}
		}
		return f
	}
	want := 0
	for i, a := range rep.Pods {
		for j, b := range rep.Pods {
			if i != j {
				fb := families(b)
				for is4 := range families(a) {
					if fb[is4] {
						want++
					}
				}
			}
		}
	}
	if n := len(rep.Pods); len(rep.Results) != want || want < n*(n-1) {
		t.Fatalf("probe: %d results for %d pods, want %d (each ordered pair once per family both have)", len(rep.Results), n, want)
	}
	for _, r := range rep.Results {
		if !r.OK {
			t.Errorf("%s → %s: tcp %v icmp %v %s", r.From, r.To, r.TCP, r.ICMP, r.Error)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// TestPrivilegedE2EScenarios: every shipped scenario without policies comes up with every
// pod reaching every other pod (TCP and ICMP), and every host's Terrane
// table is exactly what the routing core computes from the server's state
// and the host's pods.
func TestPrivilegedE2EScenarios(t *testing.T) {
	for _, sc := range lab.ShippedOpen() {
		t.Run(sc, func(t *testing.T) {
			st := up(t, sc)
			if len(st.Pods) < 2 {
				t.Fatalf("scenario %s has %d pods; a reachability proof needs two", sc, len(st.Pods))
			}
			requireFullReachability(t, st)
			requireTablesMatchCore(t, st)
		})
	}
}

// requireTablesMatchCore compares each host's table 250 with
// routing.HostRoutes over the server's snapshot.
func requireTablesMatchCore(t *testing.T, st *lab.State) {
	t.Helper()
	ctx := context.Background()
	c, err := lab.AdminClient(lab.Names{Lab: st.Name, Dir: st.Dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	snap, err := c.Snapshot(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	topo, err := topology.Load([]byte(snap.Topology))
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := st.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		if nd.Kind != "host" {
			continue
		}
		want := []string{"169.254.1.1 dev lo scope link"}
		for _, n := range topo.Networks {
			eps := map[string][]netip.Addr{}
			veth := map[netip.Addr]string{}
			for _, p := range st.Pods {
				if p.Host != nd.Name {
					continue
				}
				for _, a := range p.Addrs { // a dual-stack pod's address in n
					if n.CIDR.Contains(a.Addr()) {
						eps[nd.Name] = append(eps[nd.Name], a.Addr())
						veth[a.Addr()] = cniapi.HostVeth(p.ContainerID, p.IfName)
					}
				}
			}
			in := routing.InputFrom(n, snap.Hosts, snap.Blocks[n.Name], snap.Groups[n.Name], eps)
			rs, err := routing.HostRoutes(in, nd.Name)
			if err != nil {
				continue // the host is in no group of n
			}
			for _, r := range rs {
				if r.Local {
					want = append(want, routeText(r.Dst, "", veth[r.Dst.Addr()]))
				} else {
					want = append(want, routeText(r.Dst, r.Via.String(), ""))
				}
			}
		}
		nr, err := lab.ReadRoutes(ctx, nd.Name, nd.Kind, nd.Netns)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range nr.Routes {
			if r.Table != "250" {
				continue
			}
			dev := r.Dev
			if r.Gateway != "" {
				dev = "" // the kernel names the uplink; the core names the peer
			}
			text := routeText(netip.MustParsePrefix(withBits(r.Dst)), r.Gateway, dev)
			if r.Scope == "link" && r.Gateway == "" && dev == "lo" {
				text += " scope link"
			}
			got = append(got, text)
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("host %s table 250:\n  got  %s\n  want %s (routing core)", nd.Name, strings.Join(got, "\n       "), strings.Join(want, "\n       "))
		}
	}
}

func withBits(dst string) string {
	if strings.Contains(dst, "/") {
		return dst
	}
	if strings.Contains(dst, ":") {
		return dst + "/128"
	}
	return dst + "/32"
}

func routeText(dst netip.Prefix, via, dev string) string {
	s := strings.TrimSuffix(dst.String(), "/32")
	if via != "" {
		s += " via " + via
	}
	if dev != "" {
		s += " dev " + dev
	}
	return s
}

// agentOf returns the lab's record of host's agent process.
func agentOf(t *testing.T, st *lab.State, host string) lab.Process {
	t.Helper()
	for _, p := range st.Processes {
		if p.Role == "agent" && p.Node == host {
			return p
		}
	}
	t.Fatalf("no agent process recorded for %s", host)
	return lab.Process{}
}

// killAgent SIGKILLs host's agent (no clean shutdown) and waits until it is
// gone.
func killAgent(t *testing.T, st *lab.State, host string) {
	t.Helper()
	p := agentOf(t, st, host)
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill agent %s (pid %d): %v", host, p.PID, err)
	}
	waitUntil(t, "agent "+host+" gone", 10*time.Second, func() bool {
		return syscall.Kill(p.PID, 0) != nil || isZombie(p.PID)
	})
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] == "Z"
}

// restartAgent starts host's agent again with the same command line, in
// the same namespace, and waits until it is ready. The new process is
// found by `lab down` through its namespace.
func restartAgent(t *testing.T, st *lab.State, host string) {
	t.Helper()
	p := agentOf(t, st, host)
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", p.Netns}, p.Args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	ac := agentClient(st, host)
	waitUntil(t, "agent "+host+" ready again", 20*time.Second, func() bool {
		s, err := ac.Status(context.Background())
		return err == nil && s.Ready
	})
}

func agentClient(st *lab.State, host string) *cniapi.Client {
	return cniapi.NewClient(lab.Names{Lab: st.Name, Dir: st.Dir}.AgentSocket(host), 5*time.Second)
}

func waitUntil(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPrivilegedE2EPodDeletedAndReAdded: a pod deleted is unreachable and
// its address free; added again it is reachable from every pod.
func TestPrivilegedE2EPodDeletedAndReAdded(t *testing.T) {
	st := up(t, "flat-l2")
	ctx := context.Background()
	victim := st.Pods[1]
	if err := lab.DelPod(ctx, st.Name, st.Dir, victim.Name); err != nil {
		t.Fatal(err)
	}
	st = reload(t, st)
	if _, ok := st.Pod(victim.Name); ok {
		t.Fatal("the deleted pod is still in the lab's state")
	}
	if _, err := agentClient(st, victim.Host).Check(ctx, cniapi.Attachment{ContainerID: victim.ContainerID, IfName: victim.IfName}); err == nil {
		t.Fatal("the agent still holds the deleted pod's address")
	}
	ps, err := lab.AddPod(ctx, st.Name, st.Dir, victim.Pod)
	if err != nil {
		t.Fatal(err)
	}
	if !ps.Addr().IsValid() {
		t.Fatalf("re-added pod has no address: %+v", ps)
	}
	requireFullReachability(t, reload(t, st))
}

// TestPrivilegedE2EAgentRestartUnderTraffic: an agent killed (SIGKILL)
// while pods talk leaves its routes in place, so traffic keeps flowing; the
// restarted agent holds every allocation it had (same address for every
// pod), gives a new pod an address no pod has, and the cluster stays fully
// reachable.
func TestPrivilegedE2EAgentRestartUnderTraffic(t *testing.T) {
	st := up(t, "flat-l2")
	ctx := context.Background()
	host := st.Pods[0].Host
	var local []lab.PodState
	for _, p := range st.Pods {
		if p.Host == host {
			local = append(local, p)
		}
	}
	// Traffic across the restart: a pod on another host pings a pod of
	// the host every 50 ms for 6 s while its agent is killed and
	// restarted; not one echo may go unanswered.
	var from lab.PodState
	for _, p := range st.Pods {
		if p.Host != host {
			from = p
			break
		}
	}
	ping := exec.Command("ip", "netns", "exec", from.Netns, "ping", "-n", "-q", "-i", "0.05", "-c", "120", "-W", "1", local[0].Addr().String())
	var pingOut strings.Builder
	ping.Stdout, ping.Stderr = &pingOut, &pingOut
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	killAgent(t, st, host)
	// While the agent is down: every pod still reaches every pod.
	requireFullReachability(t, st)
	restartAgent(t, st, host)
	if took := time.Since(started); took > 5*time.Second {
		t.Fatalf("kill, probe and restart took %s: longer than the 6 s of traffic that must cover them", took)
	}
	if err := ping.Wait(); err != nil {
		t.Fatalf("traffic during the agent restart was lost: %v\n%s", err, pingOut.String())
	}
	if !strings.Contains(pingOut.String(), "120 packets transmitted, 120 received") {
		t.Fatalf("traffic during the agent restart:\n%s", pingOut.String())
	}
	ac := agentClient(st, host)
	for _, p := range local {
		got, err := ac.Check(ctx, cniapi.Attachment{ContainerID: p.ContainerID, IfName: p.IfName})
		if err != nil || got.Addr.Addr() != p.Addr() {
			t.Fatalf("after restart, pod %s: %+v %v, want %s kept", p.Name, got, err, p.Addr())
		}
	}
	extra := lab.Pod{Name: "after-restart", Host: host, Namespace: "default"}
	ps, err := lab.AddPod(ctx, st.Name, st.Dir, extra)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Pods {
		if p.Addr() == ps.Addr() {
			t.Fatalf("the restarted agent gave %s, which pod %s has", ps.Addr(), p.Name)
		}
	}
	requireFullReachability(t, reload(t, st))
}

// TestPrivilegedE2EDelWithAgentDown: a DEL while the agent is down succeeds
// (the plugin queues the release); once the agent is back the address is
// released and the queue is empty.
func TestPrivilegedE2EDelWithAgentDown(t *testing.T) {
	st := up(t, "flat-l2")
	ctx := context.Background()
	victim := st.Pods[0]
	killAgent(t, st, victim.Host)
	if err := lab.DelPod(ctx, st.Name, st.Dir, victim.Name); err != nil {
		t.Fatalf("DEL with the agent down: %v", err)
	}
	queue := lab.Names{Lab: st.Name, Dir: st.Dir}.CNIQueueDir(victim.Host)
	q, err := cniapi.ReadQueued(queue)
	if err != nil || len(q) != 1 || q[0].ContainerID != victim.ContainerID {
		t.Fatalf("queue after DEL with the agent down: %+v %v, want the pod's release", q, err)
	}
	restartAgent(t, st, victim.Host)
	if _, err := agentClient(st, victim.Host).Check(ctx, cniapi.Attachment{ContainerID: victim.ContainerID, IfName: victim.IfName}); err == nil {
		t.Fatal("the agent is back but still holds the deleted pod's address")
	}
	if q, err := cniapi.ReadQueued(queue); err != nil || len(q) != 0 {
		t.Fatalf("queue after the agent came back: %+v %v, want empty", q, err)
	}
	// The address is free again: the host's next pod gets it (the lowest).
	ps, err := lab.AddPod(ctx, st.Name, st.Dir, lab.Pod{Name: "reuse", Host: victim.Host, Namespace: victim.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	if ps.Addr() != victim.Addr() {
		t.Fatalf("the host's next pod got %s, want the released %s", ps.Addr(), victim.Addr())
	}
	requireFullReachability(t, reload(t, st))
}
