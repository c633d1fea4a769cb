package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/client"
)

// killServer kills the lab's server -9 and waits until it is gone (the
// lab's daemon reaps it), dropping it from the lab's processes.
func killServer(t *testing.T, n Names) {
	t.Helper()
	st, unlock, err := lockState(n.Lab, n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	var pids []int
	st.Processes = slices.DeleteFunc(st.Processes, func(p Process) bool {
		if p.Role == "server" {
			pids = append(pids, p.PID)
			return true
		}
		return false
	})
	if len(pids) == 0 {
		t.Fatal("the lab runs no server")
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill -9 the server (pid %d): %v", pid, err)
		}
	}
	waitUntil(t, 10*time.Second, "the server gone", func() error {
		for _, pid := range pids {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("pid %d still exists (%v)", pid, err)
			}
		}
		return nil
	})
	if err := st.Save(); err != nil {
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
// reach each other and the pods made before, across the racks' routers;
// a pod deleted meanwhile is released. Once the server is started again
// on its data, the agents catch up: the server holds every pod made while
// it was down and not the deleted one, its check is clean, and a pod added
// then is made and routed as usual.
func TestPrivilegedLabControlPlaneDown(t *testing.T) {
	requireRoot(t)
	n := testLab(t)
	upScenario(t, n, "two-racks")
	ctx := t.Context()

	killServer(t, n)
	offline := []Pod{
		{Name: "off-1", Host: "r1-host-1"},
		{Name: "off-2", Host: "r2-host-1"},
		{Name: "off-3", Host: "r2-host-1"},
	}
	addrs := map[string]netip.Addr{}
	for _, p := range offline {
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
		for _, name := range []string{"off-1", "off-2", "off-3"} {
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
		if p.Role != "agent" || (p.Node != "r1-host-1" && p.Node != "r2-host-1") {
			continue
		}
		log := mustRun(t, "cat", p.Log)
		for _, want := range []string{"the server is unreachable: pods keep starting", "the server answers again"} {
			if !strings.Contains(log, want) {
				t.Errorf("agent %s's log says nothing of %q", p.Node, want)
			}
		}
	}
}
