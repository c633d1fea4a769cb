package lab

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/testbin"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// upScenario starts a whole lab of a shipped scenario from the built
// binaries.
func upScenario(t testing.TB, n Names, name string) *State {
	t.Helper()
	bin := testbin.Terrane(t)
	start := time.Now()
	m := &countingMeter{}
	st, err := Up(t.Context(), UpOptions{Name: n.Lab, Dir: n.Dir, Scenario: shipped(t, name), Terrane: filepath.Join(bin, "terrane"), Progress: t.Logf, Meter: m})
	m.check(t)
	if err != nil {
		for _, p := range procs(st) {
			t.Logf("%s log:\n%s", p.Role+" "+p.Node, tail(p.Log, 30))
		}
		t.Fatal(err)
	}
	t.Logf("lab up %s: %.2f s", name, time.Since(start).Seconds())
	return st
}

func procs(st *State) []Process {
	if st == nil {
		return nil
	}
	return st.Processes
}

// Every shipped scenario without policies comes up from the real binaries — server, one
// agent per host namespace, fabricd, pods through libcni and terrane-cni —
// with every pod reaching every other by TCP and ICMP, each pod's address
// in a block its host owns and in the network it asked for; down then
// leaves no process, namespace or directory.
func TestPrivilegedLabEndToEnd(t *testing.T) {
	requireRoot(t)
	for _, name := range ShippedOpen() {
		t.Run(name, func(t *testing.T) {
			n := testLab(t)
			st := upScenario(t, n, name)
			if len(st.Pods) != len(st.Scenario.Pods) {
				t.Fatalf("%d pods up, scenario has %d", len(st.Pods), len(st.Scenario.Pods))
			}
			rep, err := Probe(t.Context(), st.Targets())
			if err != nil {
				t.Fatal(err)
			}
			requireAllReached(t, rep)

			c, err := AdminClient(n)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseIdleConnections()
			snap, err := c.Snapshot(t.Context(), 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			checkPodAddresses(t, st, snap)

			var pids []int
			for _, p := range st.Processes {
				pids = append(pids, p.PID)
			}
			if _, err := Down(t.Context(), DownOptions{Name: n.Lab, Dir: n.Dir}); err != nil {
				t.Fatal(err)
			}
			if alive := slices.DeleteFunc(pids, func(pid int) bool { return !alive(pid) }); len(alive) > 0 {
				t.Errorf("processes still running after down: %v", alive)
			}
			if left := labNetns(n.Prefix()); len(left) > 0 {
				t.Errorf("namespaces after down: %v", left)
			}
		})
	}
}

// checkPodAddresses: each of a pod's addresses lies in a block of its host,
// in the networks the pod asked for (or the default one).
func checkPodAddresses(t *testing.T, st *State, snap *api.Snapshot) {
	t.Helper()
	for _, p := range st.Pods {
		var found []string
		for _, a := range p.Addrs {
			in := ""
			for net, blocks := range snap.Blocks {
				for _, b := range blocks {
					if b.Prefix.Contains(a.Addr()) {
						if b.Host != p.Host {
							t.Errorf("pod %s on %s has %s from %s's block %s", p.Name, p.Host, a.Addr(), b.Host, b.Prefix)
						}
						in = net
					}
				}
			}
			if in == "" {
				t.Errorf("pod %s: %s is in no block", p.Name, a.Addr())
			}
			found = append(found, in)
		}
		if want := p.Annotations[NetworkAnnotation]; want != "" && strings.Join(found, ",") != want {
			t.Errorf("pod %s asked for network %s, got addresses of %q", p.Name, want, strings.Join(found, ","))
		}
	}
}

// Behind routers, the fabric follows the server: pods added until a rack's
// group prefix grows change the routers' routes (fabricd), and every pod,
// old and new, still reaches every other; a deleted pod's namespace and
// address are gone.
func TestPrivilegedLabFabricFollowsGrowth(t *testing.T) {
	requireRoot(t)
	n := testLab(t)
	upScenario(t, n, "two-racks")
	ctx := t.Context()
	before, err := ReadRoutes(ctx, "tor-1", "router", n.Node("tor-1"))
	if err != nil {
		t.Fatal(err)
	}
	// Blocks are /28 (16 addresses): 40 pods on one host need three blocks,
	// more than the rack's first group prefix holds.
	for i := range 40 {
		if _, err := AddPod(ctx, n.Lab, n.Dir, Pod{Name: fmt.Sprintf("x%d", i), Host: "r2-host-2"}); err != nil {
			t.Fatal(err)
		}
	}
	after, err := ReadRoutes(ctx, "tor-1", "router", n.Node("tor-1"))
	if err != nil {
		t.Fatal(err)
	}
	fabric := func(nr *NodeRoutes) []string {
		var out []string
		for _, r := range nr.Routes {
			if r.Table == "100" {
				out = append(out, r.String())
			}
		}
		return out
	}
	if slices.Equal(fabric(before), fabric(after)) {
		t.Errorf("tor-1's routes did not change as rack-2 grew:\n%s", after.Text())
	}
	st, err := LoadState(n.Lab, n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	// Probe the new pods against the original four (every pair of all 44
	// is 1,892 probes; this keeps the test quick and still crosses racks).
	targets := st.Targets()
	subset := append(slices.Clone(targets[:4]), targets[len(targets)-3:]...)
	rep, err := Probe(ctx, subset)
	if err != nil {
		t.Fatal(err)
	}
	requireAllReached(t, rep)

	gone := st.Pods[5]
	if err := DelPod(ctx, n.Lab, n.Dir, gone.Name); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(labNetns(n.Prefix()), gone.Netns) {
		t.Errorf("namespace %s survives del-pod", gone.Netns)
	}
	st, err = LoadState(n.Lab, n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Pod(gone.Name); ok {
		t.Errorf("pod %s still in the state after del-pod", gone.Name)
	}
	// A pod in the other rack reaches the remaining ones.
	rep, err = Probe(ctx, append(slices.Clone(st.Targets()[:1]), st.Targets()[len(st.Targets())-2:]...))
	if err != nil {
		t.Fatal(err)
	}
	requireAllReached(t, rep)
}
