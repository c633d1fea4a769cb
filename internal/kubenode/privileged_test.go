package kubenode_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/terrane-net/terrane/internal/k8stest"
	"github.com/terrane-net/terrane/internal/kubenode"
	"github.com/terrane-net/terrane/internal/lab"
	"github.com/terrane-net/terrane/internal/testbin"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// requireNode skips unless the test can run a real node here.
func requireNode(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: a kubelet and containerd need root; run `go test` as root")
	}
	for _, tool := range []string{"containerd", "ctr", "runc", "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("privileged test: needs %s (apt-get install containerd runc iproute2)", tool)
		}
	}
	kubelet := filepath.Join(k8stest.BinDir(), "kubelet")
	if _, err := os.Stat(kubelet); err != nil {
		t.Fatalf("no kubelet in %s: build it with `bash scripts/k8s-bins.sh` (%v)", k8stest.BinDir(), err)
	}
	return kubelet
}

// forwardInto accepts TCP connections on addr inside the namespace at
// netns and relays each to the same address in the test's namespace: the
// node reaches the test's loopback API server at the URL its kubeconfig
// names.
func forwardInto(t *testing.T, netns, addr string) {
	t.Helper()
	var l net.Listener
	err := ns.WithNetNSPath(netns, func(ns.NetNS) error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
}

// TestPrivilegedNodeRunsAPod: a real kubelet and containerd in a lab
// host's namespace register the Node with its labels and address, run a
// Pod of the lab image with Terrane's address, give the address back when
// the Pod goes (CNI DEL), and Cleanup leaves no process, mount, cgroup or
// namespace behind.
func TestPrivilegedNodeRunsAPod(t *testing.T) {
	kubelet := requireNode(t)
	bins := testbin.Terrane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	tools, err := kubenode.BuildTools(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	cluster := k8stest.Start(t)

	// A lab without pods: namespaces, the server, an agent per host.
	sc, _, err := lab.LoadScenario("flat-l2")
	if err != nil {
		t.Fatal(err)
	}
	sc.Pods = nil
	var b [3]byte
	_, _ = rand.Read(b[:])
	n := lab.Names{Lab: "kn" + hex.EncodeToString(b[:]), Dir: t.TempDir()}
	t.Cleanup(func() {
		if _, err := lab.Down(context.Background(), lab.DownOptions{Name: n.Lab, Dir: n.Dir}); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	if _, err := lab.Up(ctx, lab.UpOptions{Name: n.Lab, Dir: n.Dir, Scenario: sc, Terrane: filepath.Join(bins, "terrane")}); err != nil {
		t.Fatal(err)
	}
	host := sc.Hosts[0]
	netns := lab.NetnsPath(n.Node(host.Name))
	forwardInto(t, netns, strings.TrimPrefix(cluster.URL, "https://"))

	nodeDir := filepath.Join(n.HostDir(host.Name), "node")
	o := kubenode.Options{
		Name: host.Name, Netns: netns, Dir: nodeDir, NodeIP: host.IP,
		Labels: host.Labels, Kubeconfig: cluster.Kubeconfig, CgroupName: "terrane-test-" + n.Lab,
		CNIConfDir: n.CNIConfDir(host.Name), CNIBinDir: n.CNIBinDir(host.Name),
		Kubelet: kubelet, Terrane: filepath.Join(bins, "terrane"), Tools: tools,
	}
	t.Cleanup(func() {
		if err := kubenode.Cleanup(context.Background(), nodeDir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if t.Failed() {
			for _, f := range []string{"containerd.log", "kubelet.log"} {
				b, _ := os.ReadFile(filepath.Join(o.LogDir(), f))
				t.Logf("%s:\n%s", f, lastLines(string(b), 40))
			}
		}
	})
	node, err := kubenode.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	st, err := node.WaitReady(ctx, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node %s Ready: containerd %s, images %s, kubelet to Ready %s", host.Name, node.Timings.Containerd, node.Timings.Images, node.Timings.Ready)
	if st.Addresses["InternalIP"] != host.IP.String() {
		t.Errorf("Node InternalIP %q, want %s", st.Addresses["InternalIP"], host.IP)
	}
	for k, v := range host.Labels {
		if st.Labels[k] != v {
			t.Errorf("Node label %s=%q, want %q", k, st.Labels[k], v)
		}
	}

	// A Pod through the API, on this node, with the lab image.
	manifest := filepath.Join(t.TempDir(), "pod.yaml")
	if err := os.WriteFile(manifest, []byte(kubenode.PodManifest("default", "web", host.Name, nil)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.RunKubectl(ctx, "apply", "-f", manifest); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var podIP netip.Addr
	waitFor(t, 2*time.Minute, "pod web Running", func() error {
		out, err := cluster.RunKubectl(ctx, "get", "pod", "web", "-o", "json")
		if err != nil {
			return err
		}
		var p struct {
			Status struct {
				Phase string `json:"phase"`
				PodIP string `json:"podIP"`
			} `json:"status"`
		}
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			return err
		}
		if p.Status.Phase != "Running" || p.Status.PodIP == "" {
			return fmt.Errorf("phase %q, podIP %q", p.Status.Phase, p.Status.PodIP)
		}
		podIP, err = netip.ParseAddr(p.Status.PodIP)
		return err
	})
	t.Logf("pod web Running after %s with %s", time.Since(start).Round(time.Millisecond), podIP)

	// The sandbox's pause process runs with the score the runc shim
	// set (the kubelet asks for -998, which needs CAP_SYS_RESOURCE).
	pause := 0
	_ = filepath.WalkDir(filepath.Join("/sys/fs/cgroup/pids", o.CgroupRoot()), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			if cmd, _ := os.ReadFile("/proc/" + f + "/cmdline"); string(cmd) == "/labpod\x00" {
				fmt.Sscan(f, &pause)
			}
		}
		return nil
	})
	if pause == 0 {
		t.Errorf("no pause process (/labpod) in the node's cgroup tree")
	} else if adj, _ := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pause)); strings.TrimSpace(string(adj)) != "0" {
		t.Errorf("pause process %d: oom_score_adj %q, want 0 (the runc shim's)", pause, adj)
	}

	c, err := lab.AdminClient(n)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := c.Blocks(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	inBlock := false
	for _, bs := range blocks {
		for _, b := range bs {
			if b.Host == host.Name && b.Prefix.Contains(podIP) {
				inBlock = true
			}
		}
	}
	if !inBlock {
		t.Errorf("pod address %s is in none of %s's blocks: %v", podIP, host.Name, blocks)
	}
	sbs, err := node.Sandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sbs) != 1 || sbs[0].Pod != "web" || sbs[0].Namespace != "default" || sbs[0].Netns == "" {
		t.Fatalf("sandboxes %+v, want one of default/web with a network namespace", sbs)
	}
	// The workload answers from the pod's address, with the pod's name.
	var answer string
	err = ns.WithNetNSPath(netns, func(ns.NetNS) error {
		conn, err := net.DialTimeout("tcp", netip.AddrPortFrom(podIP, kubenode.PodPort).String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		b, err := io.ReadAll(conn)
		answer = strings.TrimSpace(string(b))
		return err
	})
	if err != nil || answer != "web" {
		t.Errorf("TCP to %s:%d from the host: %q, %v; want the pod's name", podIP, kubenode.PodPort, answer, err)
	}
	holders := func() ([]string, error) {
		ex, err := c.Explain(ctx, podIP)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, h := range ex.Holders {
			out = append(out, h.Host+" "+h.Pod)
		}
		return out, nil
	}
	waitFor(t, 30*time.Second, "the agent reporting the pod's address", func() error {
		h, err := holders()
		if err == nil && (len(h) != 1 || h[0] != host.Name+" default/web") {
			err = fmt.Errorf("holders %v", h)
		}
		return err
	})

	// Deleting the Pod: the kubelet stops the sandbox, containerd runs
	// CNI DEL, the agent frees the address and reports it.
	start = time.Now()
	if _, err := cluster.RunKubectl(ctx, "delete", "pod", "web", "--wait=true", "--timeout=60s"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the address released", func() error {
		h, err := holders()
		if err == nil && len(h) > 0 {
			err = fmt.Errorf("still held by %v", h)
		}
		return err
	})
	t.Logf("pod web deleted and its address free after %s", time.Since(start).Round(time.Millisecond))
	if _, err := os.Stat(sbs[0].Netns); err == nil {
		t.Errorf("the pod's namespace %s is still there after the Pod was deleted", sbs[0].Netns)
	}

	// Cleanup leaves nothing behind, with a pod running, even when its
	// caller's context is already cancelled.
	if err := os.WriteFile(manifest, []byte(kubenode.PodManifest("default", "web2", host.Name, nil)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.RunKubectl(ctx, "apply", "-f", manifest); err != nil {
		t.Fatal(err)
	}
	var web2 kubenode.Sandbox
	waitFor(t, 2*time.Minute, "pod web2's sandbox", func() error {
		sbs, err := node.Sandboxes(ctx)
		if err != nil {
			return err
		}
		for _, sb := range sbs {
			if sb.Pod == "web2" && sb.Netns != "" {
				web2 = sb
				return nil
			}
		}
		return fmt.Errorf("sandboxes %+v", sbs)
	})
	cancelled, cancelNow := context.WithCancel(ctx)
	cancelNow()
	start = time.Now()
	if err := kubenode.Cleanup(cancelled, nodeDir); err != nil {
		t.Fatal(err)
	}
	t.Logf("cleanup with pod web2 running: %s", time.Since(start).Round(time.Millisecond))
	if _, err := os.Stat(web2.Netns); err == nil {
		t.Errorf("running pod web2's namespace %s left", web2.Netns)
	}
	if pids, _ := exec.Command("pgrep", "-x", "labpod").Output(); len(pids) > 0 {
		for _, pid := range strings.Fields(string(pids)) {
			if cg, _ := os.ReadFile("/proc/" + pid + "/cgroup"); strings.Contains(string(cg), o.CgroupRoot()) {
				t.Errorf("container process %s of the node left", pid)
			}
		}
	}
	if pids := exec.Command("pgrep", "-f", nodeDir); pids.Run() == nil {
		out, _ := exec.Command("pgrep", "-af", nodeDir).Output()
		t.Errorf("processes left:\n%s", out)
	}
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), nodeDir) {
		t.Errorf("mounts left below %s", nodeDir)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", o.CgroupRoot())); err == nil {
		t.Errorf("cgroup %s left", o.CgroupRoot())
	}
}

// waitFor polls cond every 100 ms until it returns nil or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
