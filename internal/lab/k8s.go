package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/k8sbins"
	"github.com/terrane-net/terrane/internal/k8scp"
	"github.com/terrane-net/terrane/internal/lab/labkube"
)

// KubeNamespace holds the server's StoreRecords and its controllers' Lease.
const KubeNamespace = "terrane-system"

// DefaultNodeGrace is how long the lab's server keeps a deleted Node's
// host: short, so a lab shows the release in seconds (a cluster's default
// is minutes).
const DefaultNodeGrace = 10 * time.Second

// Kubelets a lab can run.
const (
	// KubeletLab wires Pods itself (pod netns + libcni), in seconds.
	KubeletLab = "lab"
	// KubeletReal runs a real kubelet and containerd per host.
	KubeletReal = "real"
	// KubeletNone runs no kubelet (UpOptions.NoKubelet): the caller wires
	// the Pods bound to the hosts, as the CNI benchmark does through libcni.
	KubeletNone = "none"
)

// KubeState is a lab's Kubernetes control plane.
type KubeState struct {
	// Kubeconfig is an admin kubeconfig for kubectl and clients.
	Kubeconfig string `json:"kubeconfig"`
	// URL is the kube-apiserver's, on 127.0.0.1 in the root namespace.
	URL string `json:"url"`
	// Bins holds etcd, kube-apiserver, kubectl (and kubelet).
	Bins string `json:"bins"`
	// Kubelet is KubeletLab or KubeletReal.
	Kubelet string `json:"kubelet"`
	// NodeGrace is the server's --kube-node-grace.
	NodeGrace time.Duration `json:"nodeGrace"`
}

// Kubectl is the kubectl binary beside the apiserver.
func (k *KubeState) Kubectl() string { return k.Bins + "/" + k8sbins.Kubectl }

// checkKubeOptions fills in the defaults of the --k8s options.
func checkKubeOptions(o *UpOptions) error {
	switch o.Kubelet {
	case "":
		o.Kubelet = KubeletLab
	case KubeletLab, KubeletReal:
	default:
		return fmt.Errorf("--kubelet %q: use %s (pods wired by the lab, seconds) or %s (a real kubelet and containerd per host)", o.Kubelet, KubeletLab, KubeletReal)
	}
	if !o.K8s && o.Kubelet != KubeletLab {
		return fmt.Errorf("--kubelet %s: only with --k8s", o.Kubelet)
	}
	if o.NoKubelet {
		if !o.K8s || o.Kubelet != KubeletLab || (o.Scenario != nil && len(o.Scenario.Pods) > 0) {
			return errors.New("no kubelet: only with --k8s, the default kubelet and a scenario without pods (nothing would wire them)")
		}
		o.Kubelet = KubeletNone
	}
	if o.NodeGrace < 0 {
		return fmt.Errorf("--node-grace %s: want 0 or more", o.NodeGrace)
	}
	if o.NodeGrace == 0 {
		o.NodeGrace = DefaultNodeGrace
	}
	if o.Kubelet == KubeletReal {
		return realKubeletAvailable()
	}
	return nil
}

// kubeBinaries builds (first run) or finds the binaries the lab needs.
func kubeBinaries(ctx context.Context, o UpOptions, progress func(string, ...any)) (string, error) {
	bins := slices.Clone(k8sbins.ControlPlane)
	if o.Kubelet == KubeletReal {
		bins = append(bins, k8sbins.Kubelet)
	}
	dir := o.KubeBins
	if dir == "" {
		dir = k8sbins.Dir()
	}
	if missing := k8sbins.Missing(dir, bins); len(missing) > 0 {
		progress("--k8s: building %s once (%s on 2 cores; cached in %s, later runs start in seconds)",
			strings.Join(missing, ", "), k8sbins.About(k8sbins.Estimate(dir, bins)), dir)
	}
	return k8sbins.Ensure(ctx, k8sbins.Options{Dir: dir, Binaries: bins, Progress: func(line string) { progress("%s", line) }})
}

// labProcess is a lab daemon as a k8scp.Process.
type labProcess struct{ d *daemon }

func (p labProcess) Done() <-chan struct{} { return p.d.done }
func (p labProcess) Describe() string {
	return fmt.Sprintf("%v; last lines of %s:\n%s", p.d.err, p.d.Log, tail(p.d.Log, 15))
}

// startKube runs etcd and kube-apiserver as lab daemons in the root
// namespace on 127.0.0.1 (kubectl, the server and the lab kubelet all
// reach them there), records the control plane in st and creates the
// namespace of the server's records.
func startKube(ctx context.Context, st *State) error {
	n := st.names()
	cp, err := k8scp.Start(ctx, k8scp.Options{Bins: st.Kube.Bins, Dir: n.KubeDir(),
		Spawn: func(name string, argv []string, _ string) (k8scp.Process, error) {
			d, err := startDaemon(st, name, "", "", argv)
			if err != nil {
				return nil, err
			}
			return labProcess{d}, nil
		}})
	if err != nil {
		return err
	}
	st.Kube.Kubeconfig, st.Kube.URL = cp.Kubeconfig, cp.URL
	if err := st.Save(); err != nil {
		return err
	}
	cs, err := labkube.NewClient(st.Kube.Kubeconfig)
	if err != nil {
		return err
	}
	if err := labkube.EnsureNamespace(ctx, cs, KubeNamespace); err != nil {
		return err
	}
	// Before the agents: their policy source looks for ClusterNetworkPolicies
	// once, when it starts.
	dyn, err := labkube.Dynamic(st.Kube.Kubeconfig)
	if err != nil {
		return err
	}
	if err := labkube.InstallNetworkPolicyAPI(ctx, dyn); err != nil {
		return err
	}
	// The agents (policy) and real kubelets reach the API at the
	// kubeconfig's 127.0.0.1 address inside their hosts.
	return startAPIProxy(ctx, st)
}

// applyPolicies creates the scenario's namespaces with their labels and
// applies its policies, before its pods start.
func applyPolicies(ctx context.Context, st *State) error {
	cs, err := labkube.NewClient(st.Kube.Kubeconfig)
	if err != nil {
		return err
	}
	for _, ns := range st.Scenario.Namespaces {
		labels := map[string]*string{}
		for k, v := range ns.Labels {
			labels[k] = &v
		}
		if err := labkube.EnsureNamespaceLabels(ctx, cs, ns.Name, labels); err != nil {
			return err
		}
	}
	dyn, err := labkube.Dynamic(st.Kube.Kubeconfig)
	if err != nil {
		return err
	}
	for _, p := range st.Scenario.Policies {
		var meta struct {
			Metadata struct{ Namespace string } `json:"metadata"`
		}
		if err := json.Unmarshal(p, &meta); err == nil && meta.Metadata.Namespace != "" {
			if err := labkube.EnsureNamespace(ctx, cs, meta.Metadata.Namespace); err != nil {
				return err
			}
		}
		if err := labkube.ApplyPolicy(ctx, dyn, p); err != nil {
			return err
		}
	}
	return nil
}

// nodeSpec is a host's Node: its labels, its addresses (both, on a
// dual-stack segment) as InternalIPs.
func nodeSpec(h Host) labkube.NodeSpec {
	return labkube.NodeSpec{Name: h.Name, IP: h.IP, IP6: h.IP6, Labels: h.Labels}
}

// registerNodes creates a Node per host: the scenario's labels, the
// host's address as InternalIP, Ready.
func registerNodes(ctx context.Context, st *State) error {
	cs, err := labkube.NewClient(st.Kube.Kubeconfig)
	if err != nil {
		return err
	}
	for _, h := range st.Scenario.Hosts {
		if err := labkube.EnsureNode(ctx, cs, nodeSpec(h)); err != nil {
			return err
		}
	}
	return nil
}

// waitHostsRegistered waits until the server's Node controller has made
// every lab host a host.
func waitHostsRegistered(ctx context.Context, st *State, c *client.Client) error {
	return waitFor(ctx, nil, 60*time.Second, "the Node controller registering every host", func(ctx context.Context) error {
		hosts, err := c.Hosts(ctx)
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, h := range hosts {
			have[h.Name] = true
		}
		var missing []string
		for _, h := range st.Scenario.Hosts {
			if !have[h.Name] {
				missing = append(missing, h.Name)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("not registered yet: %s", strings.Join(missing, ", "))
		}
		return nil
	})
}

// startKubelets starts what wires the lab's Pods: the lab kubelet, one
// daemon for every host, or real kubelets.
func startKubelets(ctx context.Context, st *State, progress func(string, ...any)) error {
	switch st.Kube.Kubelet {
	case KubeletReal:
		return startRealKubelets(ctx, st, progress)
	case KubeletNone:
		return nil
	}
	n := st.names()
	_ = os.Remove(n.KubeletReady())
	d, err := startDaemon(st, "kubelet", "", "", []string{st.Terrane, "lab", "kubelet", "--name", st.Name, "--dir", st.Dir})
	if err != nil {
		return err
	}
	return waitFor(ctx, d, 30*time.Second, "lab kubelet", func(context.Context) error {
		_, err := os.Stat(n.KubeletReady())
		return err
	})
}

// createPods creates the pods as Pod objects bound to their hosts and
// waits until the kubelet has wired each; the kubelet records them in
// the lab's state (the caller must not hold the lab's lock).
func createPods(ctx context.Context, st *State, pods []Pod) error {
	if st.Kube.Kubelet == KubeletNone {
		return fmt.Errorf("lab %q runs no kubelet: nothing would wire pods", st.Name)
	}
	cs, err := labkube.NewClient(st.Kube.Kubeconfig)
	if err != nil {
		return err
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, p := range pods {
		wg.Go(func() {
			spec := labkube.PodSpec{Name: p.Name, Namespace: p.Namespace, Node: p.Host, Annotations: p.Annotations, Labels: p.Labels, Image: podImage(st)}
			for _, port := range p.Ports {
				spec.Ports = append(spec.Ports, labkube.Port{Name: port.Name, Port: port.Port, Protocol: port.Protocol})
			}
			err := labkube.CreatePod(ctx, cs, spec)
			if err == nil {
				wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				_, err = labkube.WaitPodRunning(wctx, cs, p.Namespace, p.Name)
				if err == nil && st.Kube.Kubelet == KubeletReal {
					err = waitRealPod(wctx, st, p, true)
				}
				cancel()
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// deletePod deletes a pod's Pod object and waits until the kubelet has
// torn it down and the object is gone.
func deletePod(ctx context.Context, st *State, ps PodState) error {
	cs, err := labkube.NewClient(st.Kube.Kubeconfig)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := labkube.DeletePod(ctx, cs, ps.Namespace, ps.Name); err != nil {
		return err
	}
	if st.Kube.Kubelet == KubeletReal {
		return waitRealPod(ctx, st, ps.Pod, false)
	}
	return nil
}

// stopAgent stops a host's agent (SIGTERM, SIGKILL after 5 s) and drops
// it from st.Processes.
func stopAgent(st *State, host string) {
	var keep []Process
	for _, p := range st.Processes {
		if p.Role != "agent" || p.Node != host {
			keep = append(keep, p)
			continue
		}
		if !ownsRecorded(p) {
			continue
		}
		_ = syscall.Kill(-p.PID, syscall.SIGTERM)
		_ = syscall.Kill(p.PID, syscall.SIGTERM)
		deadline := time.Now().Add(5 * time.Second)
		for alive(p.PID) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if alive(p.PID) {
			_ = syscall.Kill(-p.PID, syscall.SIGKILL)
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
	st.Processes = keep
}

// agentRunning reports whether the host's recorded agent still runs.
func agentRunning(st *State, host string) bool {
	return slices.ContainsFunc(st.Processes, func(p Process) bool {
		return p.Role == "agent" && p.Node == host && ownsRecorded(p)
	})
}

// podFromRef is the lab pod of a Pod object.
func podFromRef(r labkube.PodRef) Pod {
	ann := map[string]string{}
	maps.Copy(ann, r.Annotations)
	return Pod{Name: r.Name, Host: r.Node, Namespace: r.Namespace, Annotations: ann}
}

// sortPods puts the state's pods in the scenario's order (the kubelet
// records them in the order they are wired).
func sortPods(st *State) (*State, error) {
	st, unlock, err := lockState(st.Name, st.Dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	order := map[string]int{}
	for i, p := range st.Scenario.Pods {
		order[p.Name] = i
	}
	slices.SortStableFunc(st.Pods, func(a, b PodState) int {
		ia, oka := order[a.Name]
		ib, okb := order[b.Name]
		switch {
		case oka && okb:
			return ia - ib
		case oka:
			return -1
		case okb:
			return 1
		}
		return 0
	})
	return st, st.Save()
}
