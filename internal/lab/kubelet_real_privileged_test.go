package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/k8sbins"
	"github.com/terrane-net/terrane/internal/kubenode"
	"github.com/terrane-net/terrane/internal/testbin"
)

// TestPrivilegedLabRealKubelets: `lab up --k8s --kubelet real` on a flat
// L2 segment of three hosts runs a real kubelet and containerd per host,
// whose Nodes carry the hosts' labels and addresses; the scenario's pods
// and Pods created with kubectl run as containers of the lab image with
// addresses from their node's blocks, the lab records them with
// containerd's namespaces, and every pod reaches every other. Deleting a
// Pod gives its address back (the kubelet runs CNI DEL), and `lab down`
// leaves no process, mount, cgroup or namespace behind.
func TestPrivilegedLabRealKubelets(t *testing.T) {
	requireRoot(t)
	if err := realKubeletAvailable(); err != nil {
		t.Skipf("privileged test: %v", err)
	}
	bins := k8sbins.Dir()
	if missing := k8sbins.Missing(bins, append(slices.Clone(k8sbins.ControlPlane), k8sbins.Kubelet)); len(missing) > 0 {
		t.Fatalf("Kubernetes binaries %v missing in %s: build them with `bash scripts/k8s-bins.sh --kubelet`", missing, bins)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	n := testLab(t)
	terrane := filepath.Join(testbin.Terrane(t), "terrane")

	sc := shipped(t, "flat-l2")
	for i := range sc.Hosts {
		sc.Hosts[i].Labels = map[string]string{"zone": fmt.Sprintf("z%d", i%2), "lab-host": sc.Hosts[i].Name}
	}
	sc.Pods = slices.DeleteFunc(sc.Pods, func(p Pod) bool { return !strings.HasPrefix(p.Name, "web-") })

	var (
		mu    sync.Mutex
		lines []string
	)
	start := time.Now()
	st, err := Up(ctx, UpOptions{Name: n.Lab, Dir: n.Dir, Scenario: sc, Terrane: terrane, K8s: true, Kubelet: KubeletReal,
		Progress: func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, fmt.Sprintf(format, args...))
		}})
	t.Logf("lab up --k8s --kubelet real: %s\n%s", time.Since(start).Round(time.Millisecond), strings.Join(lines, "\n"))
	if err != nil {
		dumpRealLogs(t, n, sc)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpRealLogs(t, n, sc)
		}
	})
	readyRe := regexp.MustCompile(`node (\S+) Ready ([0-9.]+)s`)
	for _, l := range lines {
		if m := readyRe.FindStringSubmatch(l); m != nil {
			t.Logf("measured: node %s Ready %ss after its kubelet started", m[1], m[2])
		}
	}

	kubectl := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, st.Kube.Kubectl(), append([]string{"--kubeconfig", st.Kube.Kubeconfig}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	// The Nodes: registered by the kubelets, with the hosts' labels and
	// addresses.
	var nodes struct {
		Items []struct {
			Metadata struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Status struct {
				Addresses []struct{ Type, Address string } `json:"addresses"`
				NodeInfo  struct {
					KubeletVersion          string `json:"kubeletVersion"`
					ContainerRuntimeVersion string `json:"containerRuntimeVersion"`
				} `json:"nodeInfo"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(kubectl("get", "nodes", "-o", "json")), &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != len(sc.Hosts) {
		t.Fatalf("%d Nodes, want %d", len(nodes.Items), len(sc.Hosts))
	}
	for _, node := range nodes.Items {
		h, ok := sc.Host(node.Metadata.Name)
		if !ok {
			t.Errorf("Node %s is no lab host", node.Metadata.Name)
			continue
		}
		for k, v := range h.Labels {
			if node.Metadata.Labels[k] != v {
				t.Errorf("Node %s: label %s=%q, want %q", h.Name, k, node.Metadata.Labels[k], v)
			}
		}
		var internal string
		for _, a := range node.Status.Addresses {
			if a.Type == "InternalIP" {
				internal = a.Address
			}
		}
		if internal != h.IP.String() {
			t.Errorf("Node %s: InternalIP %q, want %s", h.Name, internal, h.IP)
		}
		if !strings.HasPrefix(node.Status.NodeInfo.ContainerRuntimeVersion, "containerd://") || node.Status.NodeInfo.KubeletVersion == "" {
			t.Errorf("Node %s: kubelet %q, runtime %q: not a real kubelet on containerd", h.Name, node.Status.NodeInfo.KubeletVersion, node.Status.NodeInfo.ContainerRuntimeVersion)
		}
	}

	// A Pod through the API on each node, as a user makes one.
	manifests := filepath.Join(t.TempDir(), "pods.json")
	var docs []string
	for _, h := range sc.Hosts {
		docs = append(docs, kubenode.PodManifest("default", "api-"+h.Name, h.Name, nil))
	}
	if err := os.WriteFile(manifests, []byte(strings.Join(docs, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	kubectl("apply", "-f", manifests)
	for _, h := range sc.Hosts {
		if err := waitRealPod(ctx, st, Pod{Name: "api-" + h.Name, Namespace: "default", Host: h.Name}, true); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("measured: %d Pods applied with kubectl Running and recorded in %s", len(sc.Hosts), time.Since(start).Round(time.Millisecond))

	st, err = LoadState(n.Lab, n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Pods) != 2*len(sc.Hosts) {
		t.Fatalf("the lab records %d pods, want %d: %+v", len(st.Pods), 2*len(sc.Hosts), st.Pods)
	}
	c, err := AdminClient(n)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	blocks, err := c.Blocks(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Pods {
		if !strings.HasPrefix(p.Netns, "cni-") {
			t.Errorf("pod %s: netns %q, want the one containerd made (cni-…)", p.Name, p.Netns)
		}
		if _, err := os.Stat(NetnsPath(p.Netns)); err != nil {
			t.Errorf("pod %s: %v", p.Name, err)
		}
		inBlock := false
		for _, bs := range blocks {
			for _, b := range bs {
				if b.Host == p.Host && b.Prefix.Contains(p.Addr()) {
					inBlock = true
				}
			}
		}
		if !inBlock {
			t.Errorf("pod %s on %s: address %s is in none of its node's blocks", p.Name, p.Host, p.Addr())
		}
	}

	// Every pod reaches every other, across nodes.
	rep, err := Probe(ctx, st.Targets())
	if err != nil {
		t.Fatal(err)
	}
	requireAllReached(t, rep)

	// Deleting a Pod through the API: the kubelet stops its sandbox,
	// containerd runs CNI DEL, the agent frees and reports the address.
	gone, _ := st.Pod("api-" + sc.Hosts[0].Name)
	held := func(addr netip.Addr) (bool, error) {
		ex, err := c.Explain(ctx, addr)
		if err != nil {
			return false, err
		}
		return len(ex.Holders) > 0, nil
	}
	if err := waitFor(ctx, nil, 30*time.Second, "the agent reporting "+gone.Name+"'s address", func(context.Context) error {
		if h, err := held(gone.Addr()); err != nil || !h {
			return fmt.Errorf("held %v, %v", h, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	kubectl("delete", "pod", gone.Name, "--wait=true", "--timeout=60s")
	if err := waitFor(ctx, nil, 30*time.Second, gone.Name+"'s address released", func(context.Context) error {
		if h, err := held(gone.Addr()); err != nil || h {
			return fmt.Errorf("held %v, %v", h, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("measured: Pod %s deleted and %s free in %s", gone.Name, gone.Addr(), time.Since(start).Round(time.Millisecond))
	if err := waitRealPod(ctx, st, gone.Pod, false); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(NetnsPath(gone.Netns)); err == nil {
		t.Errorf("pod %s's namespace %s is still there", gone.Name, gone.Netns)
	}
	// And through the lab's own command.
	start = time.Now()
	if err := DelPod(ctx, n.Lab, n.Dir, "web-2"); err != nil {
		t.Fatal(err)
	}
	t.Logf("measured: lab del-pod web-2 in %s", time.Since(start).Round(time.Millisecond))
	st, err = LoadState(n.Lab, n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Pod("web-2"); ok || len(st.Pods) != 2*len(sc.Hosts)-2 {
		t.Errorf("after deleting two pods the lab records %d: %+v", len(st.Pods), st.Pods)
	}

	// lab down leaves nothing.
	netns := map[string]bool{}
	for _, p := range st.Pods {
		netns[p.Netns] = true
	}
	start = time.Now()
	if _, err := Down(ctx, DownOptions{Name: n.Lab, Dir: n.Dir}); err != nil {
		t.Fatal(err)
	}
	t.Logf("measured: lab down with %d pods running in %s", len(st.Pods), time.Since(start).Round(time.Millisecond))
	for ns := range netns {
		if _, err := os.Stat(NetnsPath(ns)); err == nil {
			t.Errorf("pod namespace %s left after lab down", ns)
		}
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), n.Dir) {
		t.Errorf("mounts below %s left after lab down", n.Dir)
	}
	for _, h := range sc.Hosts {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", n.nodeCgroup(h.Name))); err == nil {
			t.Errorf("cgroup %s left after lab down", n.nodeCgroup(h.Name))
		}
	}
	links, _ := filepath.Glob("/var/log/containers/*")
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, n.Dir) {
			t.Errorf("container log link %s -> %s left after lab down", l, target)
		}
	}
	if logs, _ := filepath.Glob("/var/log/pods/*"); len(logs) > 0 {
		t.Errorf("pod logs in /var/log/pods (the kubelets' podLogsDirectory is in the lab directory): %v", logs)
	}
	if out, err := exec.Command("pgrep", "-af", n.Dir).Output(); err == nil {
		t.Errorf("processes left after lab down:\n%s", out)
	}
}

// dumpRealLogs shows the end of the nodes' logs.
func dumpRealLogs(t *testing.T, n Names, sc *Scenario) {
	for _, h := range sc.Hosts {
		for _, f := range []string{"containerd.log", "kubelet.log"} {
			p := filepath.Join(n.NodeDir(h.Name), "logs", f)
			t.Logf("%s:\n%s", p, tail(p, 25))
		}
	}
	for _, f := range []string{"pods.log", "apiproxy.log", "server.log"} {
		p := filepath.Join(n.Logs(), f)
		t.Logf("%s:\n%s", p, tail(p, 25))
	}
}
