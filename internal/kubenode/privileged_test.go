package kubenode_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
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
	_ = json.Marshal
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
