package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/terrane-net/terrane/internal/k8sbins"
	"github.com/terrane-net/terrane/internal/kubenode"
)

// NodeDir holds a host's real node (lab up --k8s --kubelet real):
// containerd's and the kubelet's configuration, state and logs.
func (n Names) NodeDir(host string) string { return filepath.Join(n.HostDir(host), "node") }

// nodeCgroup is a host's cgroup root below every hierarchy's root.
func (n Names) nodeCgroup(host string) string { return n.Prefix() + host }

// realKubeletAvailable reports whether `--kubelet real` can run here,
// before the lab builds anything: root, containerd, ctr, runc, nsenter.
func realKubeletAvailable() error {
	var missing []string
	for _, t := range []struct{ tool, pkg string }{{"containerd", "containerd"}, {"ctr", "containerd"}, {"runc", "runc"}, {"nsenter", "util-linux"}} {
		if _, err := exec.LookPath(t.tool); err != nil {
			missing = append(missing, t.tool+" ("+t.pkg+")")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("--kubelet real needs %s on PATH: apt-get install containerd runc (Debian 12's containerd 1.6 and runc 1.1 work)", strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		return errors.New("--kubelet real needs root (containerd, cgroups, mounts)")
	}
	return nil
}

// realNodes are the nodes startRealNodes started, by lab directory, for
// startRealKubelets later in the same `lab up`.
var realNodes = struct {
	sync.Mutex
	m map[string][]*kubenode.Node
}{m: map[string][]*kubenode.Node{}}

// startRealNodes starts, in every host's namespace, containerd and a real
// kubelet that registers the host's Node (labels, InternalIP): the lab
// registers none itself. It runs before the agents, which need the host
// the Node controller makes of the Node; the nodes become Ready in
// startRealKubelets, once the agents installed the CNI configuration.
func startRealNodes(ctx context.Context, st *State, progress func(string, ...any)) error {
	n := st.names()
	tools, err := kubenode.BuildTools(ctx, "")
	if err != nil {
		return err
	}
	kubelet := filepath.Join(st.Kube.Bins, k8sbins.Kubelet)
	var nodes []*kubenode.Node
	for _, h := range st.Scenario.Hosts {
		o := kubenode.Options{
			Name: h.Name, Netns: NetnsPath(n.Node(h.Name)), Dir: n.NodeDir(h.Name),
			NodeIP: h.IP, Labels: h.Labels, Kubeconfig: st.Kube.Kubeconfig,
			CgroupName: n.nodeCgroup(h.Name),
			CNIConfDir: n.CNIConfDir(h.Name), CNIBinDir: n.CNIBinDir(h.Name),
			Kubelet: kubelet, Terrane: st.Terrane, Tools: tools,
		}
		node, err := kubenode.Start(ctx, o)
		if node != nil {
			for _, p := range node.Processes() {
				st.Processes = append(st.Processes, Process{Role: p.Role, Node: h.Name, PID: p.PID, Netns: n.Node(h.Name), Log: p.Log, Args: p.Args})
			}
		}
		if serr := st.Save(); serr != nil && err == nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
		nodes = append(nodes, node)
		progress("host %s: containerd up in %.1fs, images imported in %.1fs, kubelet started", h.Name, node.Timings.Containerd.Seconds(), node.Timings.Images.Seconds())
	}
	realNodes.Lock()
	realNodes.m[st.Dir] = nodes
	realNodes.Unlock()
	return nil
}

// startRealKubelets hands each node its agent's CNI configuration, waits
// until every Node is Ready and starts the pod recorder, which keeps
// st.Pods equal to the Pods running on the lab's hosts (with the network
// namespace containerd made), so `lab status` and `lab probe` reach them
// as any lab pod.
func startRealKubelets(ctx context.Context, st *State, progress func(string, ...any)) error {
	realNodes.Lock()
	nodes := realNodes.m[st.Dir]
	delete(realNodes.m, st.Dir)
	realNodes.Unlock()
	if len(nodes) != len(st.Scenario.Hosts) {
		return fmt.Errorf("--kubelet real: %d nodes started for %d hosts", len(nodes), len(st.Scenario.Hosts))
	}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, node := range nodes {
		wg.Go(func() {
			if err := node.InstallCNI(); err != nil {
				errs[i] = err
				return
			}
			s, err := node.WaitReady(ctx, 2*time.Minute)
			if err != nil {
				errs[i] = err
				return
			}
			progress("node %s Ready %.1fs after its kubelet started (InternalIP %s)", s.Name, node.Timings.Ready.Seconds(), s.Addresses["InternalIP"])
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	d, err := startDaemon(st, "pods", "", "", []string{st.Terrane, "lab", "real-pods", "--name", st.Name, "--dir", st.Dir})
	if err != nil {
		return err
	}
	return waitFor(ctx, d, 30*time.Second, "pod recorder", func(context.Context) error {
		_, err := os.Stat(st.names().realPodsReady())
		return err
	})
}

// cleanupRealNodes stops and removes the real nodes below each lab
// directory (kubenode.Cleanup: the kubelet, the pods' processes and
// namespaces, containerd, mounts, cgroups). Down calls it after stopping
// the lab's processes, before removing the directories.
func cleanupRealNodes(ctx context.Context, dirs []string) error {
	var errs []error
	for _, d := range dirs {
		nodeDirs, _ := filepath.Glob(filepath.Join(d, "hosts", "*", "node"))
		for _, nd := range nodeDirs {
			if !kubenode.IsNodeDir(nd) {
				continue
			}
			if err := kubenode.Cleanup(ctx, nd); err != nil {
				errs = append(errs, fmt.Errorf("real node %s: %w", nd, err))
			}
		}
	}
	return errors.Join(errs...)
}
