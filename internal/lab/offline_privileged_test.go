package lab

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/client"
)

// kill9 kills the lab's processes of role (on node, when not "") -9 and
// waits until they are gone.
func kill9(t *testing.T, n Names, role, node string) {
	t.Helper()
	if _, err := KillDaemons(t.Context(), n.Lab, n.Dir, role, node); err != nil {
		t.Fatal(err)
	}
}

// restartAgent starts host's agent again on its state and waits until it
// is ready.
func restartAgent(t *testing.T, n Names, host string) {
	t.Helper()
	if err := RestartAgent(t.Context(), n.Lab, n.Dir, host); err != nil {
		t.Fatal(err)
	}
}

// restartServer starts the lab's server again on its data directory.
func restartServer(t *testing.T, n Names) *client.Client {
	t.Helper()
	st, unlock, err := lockState(n.Lab, n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	c, err := startServer(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// probeAll probes every pod of the lab and requires every pair to reach.
func probeAll(t *testing.T, n Names) *State {
	t.Helper()
	st, err := LoadState(n.Lab, n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Probe(t.Context(), st.Targets())
	if err != nil {
		t.Fatal(err)
	}
	requireAllReached(t, rep)
	return st
}

// Pods keep starting while the control plane is down: two-racks with its
// server killed -9. Pods added on hosts of both racks get addresses from
// their hosts' blocks (add-pod says it does not wait for the routers) and
// reach each other and the pods made before, across the racks' routers,
// also on a host whose agent was killed -9 and started again meanwhile
// (from the cluster state it kept); a pod deleted meanwhile is released. Once the server is started again
// on its data, the agents catch up: the server holds every pod made while
// it was down and not the deleted one, its check is clean, and a pod added
// then is made and routed as usual.
func TestPrivilegedLabControlPlaneDown(t *testing.T) {
	requireRoot(t)
	n := testLab(t)
	upScenario(t, n, "two-racks")
	ctx := t.Context()

	kill9(t, n, "server", "")
	offline := []Pod{
		{Name: "off-1", Host: "r1-host-1"},
		{Name: "off-2", Host: "r2-host-1"},
		{Name: "off-3", Host: "r2-host-1"},
		{Name: "off-4", Host: "r2-host-2"},
	}
	addrs := map[string]netip.Addr{}
	for i, p := range offline {
		if i == len(offline)-1 {
			// An agent killed and started again while the server is
			// down starts from the cluster state it kept.
			kill9(t, n, "agent", p.Host)
			restartAgent(t, n, p.Host)
		}
		var said []string
		ps, err := AddPodSaying(ctx, n.Lab, n.Dir, p, func(f string, args ...any) { said = append(said, fmt.Sprintf(f, args...)) })
		if err != nil {
			t.Fatalf("add-pod %s with the server down: %v", p.Name, err)
		}
		if len(said) != 1 || !strings.Contains(said[0], "the server is unreachable") || !strings.Contains(said[0], "not waiting for the routers") {
			t.Errorf("add-pod %s with the server down said %q; want one line saying it does not wait for the routers", p.Name, said)
		}
		addrs[p.Name] = ps.Addr()
	}
	probeAll(t, n)
	if err := DelPod(ctx, n.Lab, n.Dir, "off-3"); err != nil {
		t.Fatalf("del-pod with the server down: %v", err)
	}
	probeAll(t, n)

	c := restartServer(t, n)
	waitUntil(t, 30*time.Second, "the server holding the pods made while it was down", func() error {
		for _, name := range []string{"off-1", "off-2", "off-3", "off-4"} {
			ex, err := c.Explain(ctx, addrs[name])
			if err != nil {
				return err
			}
			var pods []string
			for _, h := range ex.Holders {
				pods = append(pods, h.Pod)
			}
			want := []string{"default/" + name}
			if name == "off-3" {
				want = nil // deleted while the server was down
			}
			if !slices.Equal(pods, want) {
				return fmt.Errorf("%s (pod %s) is held by %v, want %v", addrs[name], name, pods, want)
			}
		}
		return nil
	})
	chk, err := c.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !chk.Clean {
		t.Errorf("check after the catch-up: %+v", chk.Findings)
	}
	var said []string
	if _, err := AddPodSaying(ctx, n.Lab, n.Dir, Pod{Name: "after", Host: "r2-host-2"}, func(f string, args ...any) { said = append(said, fmt.Sprintf(f, args...)) }); err != nil {
		t.Fatalf("add-pod once the server is back: %v", err)
	}
	if len(said) != 1 || !strings.Contains(said[0], "waiting for the routers") || strings.Contains(said[0], "unreachable") {
		t.Errorf("add-pod with the server up said %q; want one line saying it waits for the routers", said)
	}
	st := probeAll(t, n)
	// Each agent that served pods offline said when it lost and found the
	// server again.
	for _, p := range st.Processes {
		if p.Role != "agent" || (p.Node != "r1-host-1" && p.Node != "r2-host-1" && p.Node != "r2-host-2") {
			continue
		}
		log := mustRun(t, "cat", p.Log)
		want := []string{"the server is unreachable: pods keep starting", "the server answers again"}
		if p.Node == "r2-host-2" {
			want[0] = "the server is unreachable: starting from the cluster state kept"
		}
		for _, want := range want {
			if !strings.Contains(log, want) {
				t.Errorf("agent %s's log says nothing of %q", p.Node, want)
			}
		}
	}
}
