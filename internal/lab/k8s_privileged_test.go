package lab

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/k8sbins"
	"github.com/terrane-net/terrane/internal/kube"
	"github.com/terrane-net/terrane/internal/testbin"
)

// upK8s starts a lab of a shipped scenario with --k8s (the lab kubelet).
func upK8s(t testing.TB, n Names, scenario string, grace time.Duration) *State {
	t.Helper()
	bins := k8sbins.Dir()
	if missing := k8sbins.Missing(bins, k8sbins.ControlPlane); len(missing) > 0 {
		t.Fatalf("%s not in %s: build them with `%s` (%s the first time)", strings.Join(missing, ", "), bins,
			k8sbins.BuildCommand, k8sbins.About(k8sbins.Estimate(bins, k8sbins.ControlPlane)))
	}
	bin := testbin.Terrane(t)
	start := time.Now()
	m := &countingMeter{}
	st, err := Up(t.Context(), UpOptions{Name: n.Lab, Dir: n.Dir, Scenario: shipped(t, scenario), Terrane: filepath.Join(bin, "terrane"),
		Progress: t.Logf, Meter: m, K8s: true, NodeGrace: grace, KubeBins: bins})
	m.check(t)
	if err != nil {
		for _, p := range procs(st) {
			t.Logf("%s log:\n%s", p.Role+" "+p.Node, tail(p.Log, 30))
		}
		t.Fatal(err)
	}
	t.Logf("lab up --k8s %s: %.2f s", scenario, time.Since(start).Seconds())
	return st
}

// kubectl runs the lab's kubectl from the root namespace with the lab's
// kubeconfig, as a user would.
func kubectl(t testing.TB, st *State, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), st.Kube.Kubectl(), append([]string{"--kubeconfig", st.Kube.Kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// kubectlRun creates a Pod the way `kubectl run` does, bound to a host
// (no scheduler), and waits until it is Ready.
func kubectlRun(t testing.TB, st *State, name, namespace, host string, annotations map[string]string) {
	t.Helper()
	args := []string{"run", name, "-n", namespace, "--image=terrane.io/lab-pod:none", "--overrides", fmt.Sprintf(`{"spec":{"nodeName":%q}}`, host)}
	for _, k := range slices.Sorted(maps.Keys(annotations)) {
		args = append(args, "--annotations", k+"="+annotations[k])
	}
	kubectl(t, st, args...)
	kubectl(t, st, "wait", "-n", namespace, "--for=condition=Ready", "pod/"+name, "--timeout=60s")
}

func labClient(t testing.TB, n Names) *client.Client {
	t.Helper()
	c, err := AdminClient(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// waitUntil polls cond every 100 ms for up to d.
func waitUntil(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// holders waits until the server's view of addr (from the agents'
// reports) has want holders.
func waitHolders(t testing.TB, c *client.Client, addr netip.Addr, want int) {
	t.Helper()
	waitUntil(t, 30*time.Second, fmt.Sprintf("%s held by %d", addr, want), func() error {
		ex, err := c.Explain(t.Context(), addr)
		if err != nil {
			return err
		}
		if len(ex.Holders) != want {
			return fmt.Errorf("holders %+v", ex.Holders)
		}
		return nil
	})
}

func reload(t testing.TB, n Names) *State {
	t.Helper()
	st, err := LoadState(n.Lab, n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// lab up --k8s on flat-l2: Nodes registered as hosts by the Node
// controller, scenario pods as Pod objects with their addresses in
// status; a Pod made with kubectl appears in the lab's status and probes;
// deleting it runs CNI DEL (the server sees the address released);
// deleting a Node whose pods are gone releases its blocks after the
// grace, while a deleted Node whose agent still reports pods keeps them.
func TestPrivilegedLabK8sFlatL2(t *testing.T) {
	requireRoot(t)
	n := testLab(t)
	const grace = 4 * time.Second
	st := upK8s(t, n, "flat-l2", grace)
	c := labClient(t, n)

	// Nodes and hosts.
	if got := kubectl(t, st, "get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"); got != "host-1 host-2 host-3" {
		t.Fatalf("nodes %q, want host-1 host-2 host-3", got)
	}
	hosts, err := c.Hosts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 3 {
		t.Fatalf("server holds %d hosts, want 3: %+v", len(hosts), hosts)
	}
	for _, h := range hosts {
		if h.Labels[kube.ManagedLabel] != kube.ManagedValue {
			t.Errorf("host %s labels %v: not registered by the Node controller", h.Name, h.Labels)
		}
		sh, _ := st.Scenario.Host(h.Name)
		if h.IP != sh.IP {
			t.Errorf("host %s IP %s, want the Node's InternalIP %s", h.Name, h.IP, sh.IP)
		}
	}

	// Scenario pods are Pod objects, Running, with their addresses.
	if len(st.Pods) != len(st.Scenario.Pods) {
		t.Fatalf("%d pods wired, scenario has %d", len(st.Pods), len(st.Scenario.Pods))
	}
	for _, p := range st.Pods {
		got := kubectl(t, st, "get", "pod", "-n", p.Namespace, p.Name, "-o", "jsonpath={.status.phase} {.status.podIP} {.status.hostIP} {.spec.nodeName}")
		sh, _ := st.Scenario.Host(p.Host)
		if want := fmt.Sprintf("Running %s %s %s", p.Addr(), sh.IP, p.Host); got != want {
			t.Errorf("pod %s/%s: %q, want %q", p.Namespace, p.Name, got, want)
		}
		if p.UID == "" {
			t.Errorf("pod %s: no UID recorded", p.Name)
		}
	}

	// A Pod made through the API joins the lab.
	kubectlRun(t, st, "extra", "default", "host-2", nil)
	st = reload(t, n)
	extra, ok := st.Pod("extra")
	if !ok {
		t.Fatalf("pod extra not in the lab's state: %+v", st.Pods)
	}
	if ip := kubectl(t, st, "get", "pod", "extra", "-o", "jsonpath={.status.podIP}"); ip != extra.Addr().String() {
		t.Fatalf("pod extra: podIP %q, the lab wired %s", ip, extra.Addr())
	}
	rep, err := Gather(t.Context(), st, true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Kubeconfig != st.Kube.Kubeconfig || !strings.Contains(rep.Text(), "export KUBECONFIG="+st.Kube.Kubeconfig) {
		t.Errorf("status: kubeconfig %q, want %q in JSON and text", rep.Kubeconfig, st.Kube.Kubeconfig)
	}
	if !slices.ContainsFunc(rep.Pods, func(p PodState) bool { return p.Name == "extra" }) {
		t.Errorf("status lists no pod extra")
	}
	if len(rep.Probe.Results) != 7*6 {
		t.Errorf("probe ran %d pairs, want 42 (7 pods)", len(rep.Probe.Results))
	}
	requireAllReached(t, rep.Probe)

	// Deleting it through the API: CNI DEL, namespace gone, address free.
	waitHolders(t, c, extra.Addr(), 1)
	kubectl(t, st, "delete", "pod", "extra", "--timeout=60s")
	st = reload(t, n)
	if _, ok := st.Pod("extra"); ok {
		t.Errorf("pod extra still in the lab's state after its Pod was deleted")
	}
	if slices.Contains(labNetns(n.Prefix()), extra.Netns) {
		t.Errorf("namespace %s still there", extra.Netns)
	}
	waitHolders(t, c, extra.Addr(), 0)

	// Node host-3 without pods, host-2 with pods still reported.
	for _, p := range st.Pods {
		if p.Host == "host-3" {
			kubectl(t, st, "delete", "pod", "-n", p.Namespace, p.Name, "--timeout=60s")
			waitHolders(t, c, p.Addr(), 0)
		}
	}
	// The grace runs from the deletion, which happens while kubectl runs:
	// the clock starts before it.
	deleted := time.Now()
	kubectl(t, st, "delete", "node", "host-3", "host-2")
	waitUntil(t, grace+30*time.Second, "host-3 removed with its blocks", func() error {
		snap, err := c.Snapshot(t.Context(), 0, 0)
		if err != nil {
			return err
		}
		if blocks := hostBlocks(snap.Blocks, "host-3"); len(blocks) > 0 || slices.ContainsFunc(snap.Hosts, func(h ipam.HostInfo) bool { return h.Name == "host-3" }) {
			return fmt.Errorf("host-3 still holds %v", blocks)
		}
		return nil
	})
	if took := time.Since(deleted); took < grace {
		t.Errorf("host-3 removed %s after its Node's deletion began, before the grace of %s", took, grace)
	}
	snap, err := c.Snapshot(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if blocks := hostBlocks(snap.Blocks, "host-2"); len(blocks) == 0 {
		t.Errorf("host-2's Node is deleted with its pods still running: its blocks must stay while its agent reports them in use")
	}
	st = reload(t, n)
	if agentRunning(st, "host-3") {
		t.Errorf("host-3's agent still runs after its Node was deleted")
	}
	// The pods of host-1 still reach each other and host-2's.
	rep2, err := Probe(t.Context(), st.Targets())
	if err != nil {
		t.Fatal(err)
	}
	requireAllReached(t, rep2)
}

func hostBlocks(blocks map[string][]ipam.BlockInfo, host string) []netip.Prefix {
	var out []netip.Prefix
	for _, bs := range blocks {
		for _, b := range bs {
			if b.Host == host {
				out = append(out, b.Prefix)
			}
		}
	}
	return out
}

// lab up --k8s on two-networks: the scenario's red pods and a Pod made
// with kubectl annotated terrane.io/network: red get red addresses (the
// annotation reaches the plugin as containerd passes it); a Pod in a
// namespace annotated red gets one too (the Namespace controller).
func TestPrivilegedLabK8sNetworkAnnotation(t *testing.T) {
	requireRoot(t)
	n := testLab(t)
	st := upK8s(t, n, "two-networks", 0)
	c := labClient(t, n)
	red := netip.MustParsePrefix("10.40.0.0/16")

	snap, err := c.Snapshot(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkPodAddresses(t, st, snap)

	kubectlRun(t, st, "crimson-1", "default", "host-3", map[string]string{NetworkAnnotation: "red"})
	kubectl(t, st, "create", "namespace", "crimson")
	kubectl(t, st, "annotate", "namespace", "crimson", NetworkAnnotation+"=red")
	waitUntil(t, 30*time.Second, "namespace crimson's default network red", func() error {
		ns, err := c.Namespaces(t.Context())
		if err != nil {
			return err
		}
		if ns["crimson"] != "red" {
			return fmt.Errorf("namespaces %v", ns)
		}
		return nil
	})
	kubectlRun(t, st, "crimson-2", "crimson", "host-3", nil)
	kubectlRun(t, st, "plain", "default", "host-3", nil)
	for pod, wantRed := range map[string]bool{"crimson-1": true, "crimson-2": true, "plain": false} {
		ns := "default"
		if pod == "crimson-2" {
			ns = "crimson"
		}
		ip, err := netip.ParseAddr(kubectl(t, st, "get", "pod", "-n", ns, pod, "-o", "jsonpath={.status.podIP}"))
		if err != nil {
			t.Fatalf("pod %s: %v", pod, err)
		}
		if red.Contains(ip) != wantRed {
			t.Errorf("pod %s/%s got %s; in red (%s): %v, want %v", ns, pod, ip, red, red.Contains(ip), wantRed)
		}
	}
	st = reload(t, n)
	rep, err := Probe(t.Context(), st.Targets())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Pods) != 8 {
		t.Errorf("%d pods in the lab, want 8", len(st.Pods))
	}
	requireAllReached(t, rep)
}

// Every shipped scenario without policies comes up with --k8s: every pod a Running Pod
// whose podIP is the address the lab probes, every pair reaching.
func TestPrivilegedLabK8sEveryScenario(t *testing.T) {
	requireRoot(t)
	for _, name := range ShippedOpen() {
		t.Run(name, func(t *testing.T) {
			n := testLab(t)
			st := upK8s(t, n, name, 0)
			if len(st.Pods) != len(st.Scenario.Pods) {
				t.Fatalf("%d pods up, scenario has %d", len(st.Pods), len(st.Scenario.Pods))
			}
			ips := kubectl(t, st, "get", "pods", "-A", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.podIP} {end}`)
			for _, p := range st.Pods {
				if !strings.Contains(" "+ips+" ", " "+p.Name+"="+p.Addr().String()+" ") {
					t.Errorf("pod %s: the API says %q, the lab wired %s", p.Name, ips, p.Addr())
				}
			}
			rep, err := Probe(t.Context(), st.Targets())
			if err != nil {
				t.Fatal(err)
			}
			requireAllReached(t, rep)
			if _, err := Down(context.Background(), DownOptions{Name: n.Lab, Dir: n.Dir}); err != nil {
				t.Fatal(err)
			}
			for _, p := range st.Processes {
				if alive(p.PID) && ownsRecorded(p) {
					t.Errorf("%s still runs after down (pid %d)", p.Role, p.PID)
				}
			}
		})
	}
}
