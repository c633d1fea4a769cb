package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"

	"github.com/terrane-net/terrane/internal/lab/labkube"
)

// RunKubelet is the lab kubelet (`terrane lab kubelet`, started by `lab up
// --k8s`): it wires the Pods bound to the lab's hosts as a kubelet and a
// container runtime would — a network namespace, CNI ADD on the host with
// the K8S_POD_* arguments and the pod's annotations, the pod's status —
// records them in the lab's state, and tears them down when they are
// deleted. It runs a host's agent only while the host's Node exists.
func RunKubelet(ctx context.Context, name, dir string, log *slog.Logger) error {
	st, err := LoadState(name, dir)
	if err != nil {
		return err
	}
	if st.Kube == nil {
		return fmt.Errorf("lab %q runs without Kubernetes (lab up --k8s)", name)
	}
	cs, err := labkube.NewClient(st.Kube.Kubeconfig)
	if err != nil {
		return err
	}
	nodes := map[string]labkube.NodeSpec{}
	for _, h := range st.Scenario.Hosts {
		nodes[h.Name] = nodeSpec(h)
	}
	n := st.names()
	return labkube.RunKubelet(ctx, labkube.KubeletOptions{
		Client: cs, Nodes: nodes, Log: log,
		Wirer: &wirer{name: name, dir: dir, log: log},
		Ready: func() {
			if err := os.WriteFile(n.KubeletReady(), []byte("ready\n"), 0o600); err != nil {
				log.Error("write ready file", "err", err)
			}
		},
	})
}

// wirer is the lab's container runtime for the lab kubelet. It takes the
// lab's lock only to read and write the state, never across CNI calls, so
// pods wire in parallel and `lab up` can wait for them.
type wirer struct {
	name, dir string
	log       *slog.Logger
}

var _ labkube.Wirer = (*wirer)(nil)

func (w *wirer) Wire(ctx context.Context, r labkube.PodRef) ([]netip.Addr, error) {
	st, unlock, err := lockState(w.name, w.dir)
	if err != nil {
		return nil, err
	}
	n := st.names()
	if ps, ok := st.Pod(r.Name); ok {
		unlock()
		if ps.UID == r.UID && ps.Namespace == r.Namespace {
			return addrsOf(ps), nil
		}
		return nil, fmt.Errorf("the lab names a pod's network namespace by the pod's name, and %q is taken by pod %s/%s: pick another name", r.Name, ps.Namespace, ps.Name)
	}
	if _, ok := st.VM(r.Name); ok {
		unlock()
		return nil, fmt.Errorf("%q is a lab VM's name; pods and VMs share the probe matrix, pick another", r.Name)
	}
	if _, ok := st.Scenario.Host(r.Node); !ok {
		unlock()
		return nil, fmt.Errorf("node %q is not a host of lab %q", r.Node, w.name)
	}
	ps := PodState{Pod: podFromRef(r), Netns: n.Pod(r.Name), ContainerID: "k8s-" + r.UID, IfName: podIfName, UID: r.UID}
	if slices.Contains(st.Netns, ps.Netns) {
		unlock()
		// Another worker is wiring a pod of that name (another namespace),
		// or one was left half made: Unwire of that one clears it.
		return nil, fmt.Errorf("network namespace %s is in use (a pod of that name in another namespace?)", ps.Netns)
	}
	st.Netns = append(st.Netns, ps.Netns)
	err = st.Save()
	unlock()
	if err != nil {
		return nil, err
	}

	ps, err = cniAdd(ctx, st, ps)
	if err != nil {
		// Leave nothing half made: the next attempt starts clean.
		_ = delPod(context.WithoutCancel(ctx), st, ps)
		if uerr := w.update(func(st *State) { st.Netns = slices.DeleteFunc(st.Netns, func(s string) bool { return s == ps.Netns }) }); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return nil, err
	}
	err = w.update(func(st *State) {
		st.Pods = append(st.Pods, ps)
		if !slices.ContainsFunc(st.Scenario.Pods, func(p Pod) bool { return p.Name == ps.Name }) {
			st.Scenario.Pods = append(st.Scenario.Pods, ps.Pod)
		}
	})
	return addrsOf(ps), err
}

func (w *wirer) Unwire(ctx context.Context, r labkube.PodRef) error {
	st, err := LoadState(w.name, w.dir)
	if err != nil {
		return err
	}
	ps, ok := st.Pod(r.Name)
	if !ok || ps.Namespace != r.Namespace || (r.UID != "" && ps.UID != r.UID) {
		return nil
	}
	if err := delPod(ctx, st, ps); err != nil {
		return err
	}
	return w.update(func(st *State) {
		st.Pods = slices.DeleteFunc(st.Pods, func(p PodState) bool { return p.Name == ps.Name })
		st.Scenario.Pods = slices.DeleteFunc(st.Scenario.Pods, func(p Pod) bool { return p.Name == ps.Name })
		st.Netns = slices.DeleteFunc(st.Netns, func(s string) bool { return s == ps.Netns })
	})
}

func (w *wirer) Wired() ([]labkube.PodRef, error) {
	st, err := LoadState(w.name, w.dir)
	if err != nil {
		return nil, err
	}
	var out []labkube.PodRef
	for _, p := range st.Pods {
		if p.UID != "" {
			out = append(out, labkube.PodRef{Namespace: p.Namespace, Name: p.Name, UID: p.UID, Node: p.Host, Annotations: p.Annotations})
		}
	}
	return out, nil
}

// NodeChanged stops a host's agent when its Node is deleted (as a
// DaemonSet's pod goes with its node; a running agent would register the
// host again) and starts it when the Node is back.
func (w *wirer) NodeChanged(ctx context.Context, node string, exists bool) error {
	st, unlock, err := lockState(w.name, w.dir)
	if err != nil {
		return err
	}
	defer unlock()
	h, ok := st.Scenario.Host(node)
	if !ok {
		return nil
	}
	running := agentRunning(st, node)
	switch {
	case !exists && running:
		w.log.Info("node deleted: stopping its agent", "node", node)
		stopAgent(st, node)
		return st.Save()
	case exists && !running:
		w.log.Info("node back: starting its agent", "node", node)
		d, err := startAgent(ctx, st, h)
		if err != nil {
			return err
		}
		return waitAgent(ctx, st.names(), d)
	}
	return nil
}

// update changes the state under the lab's lock.
func (w *wirer) update(fn func(*State)) error {
	st, unlock, err := lockState(w.name, w.dir)
	if err != nil {
		return err
	}
	defer unlock()
	fn(st)
	return st.Save()
}

func addrsOf(ps PodState) []netip.Addr {
	var out []netip.Addr
	for _, a := range ps.Addrs {
		out = append(out, a.Addr())
	}
	return out
}
