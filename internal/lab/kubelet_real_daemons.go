package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/terrane-net/terrane/internal/kubenode"
	"github.com/terrane-net/terrane/internal/lab/labkube"
)

// Files of the real kubelets' daemons.
func (n Names) apiProxyReady() string { return filepath.Join(n.KubeDir(), "apiproxy.ready") }
func (n Names) realPodsReady() string { return filepath.Join(n.KubeDir(), "real-pods.ready") }

// podImage is the image of the lab's Pods: with real kubelets, the lab's
// pod image imported into every node's containerd.
func podImage(st *State) string {
	if st.Kube != nil && st.Kube.Kubelet == KubeletReal {
		return kubenode.PodImage
	}
	return ""
}

// startAPIProxy starts `terrane lab apiproxy` and waits until it listens
// in every host's namespace.
func startAPIProxy(ctx context.Context, st *State) error {
	n := st.names()
	_ = os.Remove(n.apiProxyReady())
	d, err := startDaemon(st, "apiproxy", "", "", []string{st.Terrane, "lab", "apiproxy", "--name", st.Name, "--dir", st.Dir})
	if err != nil {
		return err
	}
	return waitFor(ctx, d, 30*time.Second, "API proxy", func(context.Context) error {
		_, err := os.Stat(n.apiProxyReady())
		return err
	})
}

// RunAPIProxy (`terrane lab apiproxy`, started by `lab up --k8s --kubelet
// real`) listens on the kube-apiserver's address (127.0.0.1:PORT) inside
// every host's namespace and relays each connection to the apiserver in
// the root namespace: a host's kubelet reaches the API at the URL of the
// lab's kubeconfig, as a node reaches its control plane's endpoint. It
// relays bytes (TLS end to end) and runs until cancelled.
func RunAPIProxy(ctx context.Context, name, dir string, log *slog.Logger) error {
	st, err := LoadState(name, dir)
	if err != nil {
		return err
	}
	if st.Kube == nil {
		return fmt.Errorf("lab %q runs without Kubernetes (lab up --k8s)", name)
	}
	u, err := url.Parse(st.Kube.URL)
	if err != nil {
		return fmt.Errorf("API server URL %q: %w", st.Kube.URL, err)
	}
	addr := u.Host
	n := st.names()
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for _, h := range st.Scenario.Hosts {
		var l net.Listener
		err := ns.WithNetNSPath(NetnsPath(n.Node(h.Name)), func(ns.NetNS) error {
			var err error
			l, err = net.Listen("tcp", addr)
			return err
		})
		if err != nil {
			return fmt.Errorf("host %s: listen on %s: %w", h.Name, addr, err)
		}
		listeners = append(listeners, l)
		go relay(ctx, l, addr, log.With("host", h.Name))
	}
	if err := os.WriteFile(n.apiProxyReady(), []byte("ready\n"), 0o600); err != nil {
		return err
	}
	log.Info("relaying the API server into every host", "addr", addr, "hosts", len(listeners))
	// A listener keeps its namespace alive: once the lab is gone (its
	// state removed by a `lab down` that could not find this process),
	// stop.
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
		if _, err := LoadState(name, dir); errors.Is(err, ErrNoLab) {
			log.Info("the lab is gone; stopping")
			return nil
		}
	}
}

// relay accepts on l and copies each connection both ways to addr.
func relay(ctx context.Context, l net.Listener, addr string, log *slog.Logger) {
	var d net.Dialer
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				log.Warn("dial the API server", "err", err)
				return
			}
			defer up.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(up, c)
				_ = up.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			_, _ = io.Copy(c, up)
			_ = c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}

// RunRealPods (`terrane lab real-pods`, started by `lab up --k8s
// --kubelet real`) keeps the lab's pods in state.json equal to the Pods
// the real kubelets run: every Running Pod on a lab host with its
// addresses, the sandbox containerd made and its network namespace (a
// Pod created with kubectl too); a Pod deleted or no longer running is
// forgotten. It polls the API every 300 ms and containerd only for a pod
// it has not recorded yet.
func RunRealPods(ctx context.Context, name, dir string, log *slog.Logger) error {
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
	hosts := map[string]bool{}
	for _, h := range st.Scenario.Hosts {
		hosts[h.Name] = true
	}
	ready := false
	var logged string
	for {
		err := syncRealPods(ctx, name, dir, realPodSource{
			list: func(ctx context.Context) ([]labkube.RunningPod, error) { return labkube.RunningPods(ctx, cs, hosts) },
			sandboxes: func(ctx context.Context, host string) ([]kubenode.Sandbox, error) {
				return kubenode.Sandboxes(ctx, "", kubenode.ContainerdSocketIn(st.names().NodeDir(host)))
			},
		}, log)
		switch {
		case errors.Is(err, ErrNoLab):
			log.Info("the lab is gone; stopping")
			return nil
		case err != nil && err.Error() != logged && ctx.Err() == nil:
			log.Warn("sync pods", "err", err)
			logged = err.Error()
		case err == nil:
			logged = ""
			if !ready {
				if werr := os.WriteFile(st.names().realPodsReady(), []byte("ready\n"), 0o600); werr != nil {
					return werr
				}
				ready = true
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// realPodSource is where syncRealPods learns what runs: the API's
// Running Pods and a host's containerd sandboxes.
type realPodSource struct {
	list      func(context.Context) ([]labkube.RunningPod, error)
	sandboxes func(ctx context.Context, host string) ([]kubenode.Sandbox, error)
}

// syncRealPods records the running Pods and forgets the others.
func syncRealPods(ctx context.Context, name, dir string, src realPodSource, log *slog.Logger) error {
	st, err := LoadState(name, dir)
	if err != nil {
		return err
	}
	running, err := src.list(ctx)
	if err != nil {
		return err
	}
	liveUID := map[string]bool{}
	for _, rp := range running {
		liveUID[rp.UID] = true
	}
	var add []PodState
	sandboxes := map[string][]kubenode.Sandbox{}
	var errs []error
	// The lab names pods by name alone (one probe matrix with its VMs):
	// a Pod whose name is taken by another running one, or by a VM, runs
	// but is not recorded.
	taken := func(rp labkube.RunningPod) error {
		if _, ok := st.VM(rp.Name); ok {
			return fmt.Errorf("pod %s/%s: %q is a lab VM's name; it is not probed", rp.Namespace, rp.Name, rp.Name)
		}
		if ps, ok := st.Pod(rp.Name); ok && ps.UID != rp.UID && liveUID[ps.UID] {
			return fmt.Errorf("pod %s/%s: the lab names pods by name alone and %q is pod %s/%s's; it is not probed", rp.Namespace, rp.Name, rp.Name, ps.Namespace, ps.Name)
		}
		if i := slices.IndexFunc(add, func(p PodState) bool { return p.Name == rp.Name }); i >= 0 {
			return fmt.Errorf("pod %s/%s: the lab names pods by name alone and %q is pod %s/%s's; it is not probed", rp.Namespace, rp.Name, rp.Name, add[i].Namespace, add[i].Name)
		}
		return nil
	}
	for _, rp := range running {
		if ps, ok := st.Pod(rp.Name); ok && ps.UID == rp.UID {
			continue
		}
		if err := taken(rp); err != nil {
			errs = append(errs, err)
			continue
		}
		sbs, ok := sandboxes[rp.Node]
		if !ok {
			sbs, err = src.sandboxes(ctx, rp.Node)
			if err != nil {
				errs = append(errs, fmt.Errorf("host %s: %w", rp.Node, err))
				continue
			}
			sandboxes[rp.Node] = sbs
		}
		i := slices.IndexFunc(sbs, func(sb kubenode.Sandbox) bool { return sb.UID == rp.UID && sb.Netns != "" })
		if i < 0 {
			errs = append(errs, fmt.Errorf("pod %s/%s: no sandbox with a network namespace in %s's containerd yet", rp.Namespace, rp.Name, rp.Node))
			continue
		}
		ps := PodState{Pod: podFromRef(rp.PodRef), Netns: filepath.Base(sbs[i].Netns), ContainerID: sbs[i].ID, IfName: podIfName, UID: rp.UID}
		for _, a := range rp.IPs {
			ps.Addrs = append(ps.Addrs, netip.PrefixFrom(a, a.BitLen()))
		}
		add = append(add, ps)
	}
	// Recorded pods whose Pod no longer runs (deleted, or replaced by a
	// new Pod of the same name).
	var gone []string
	for _, p := range st.Pods {
		if p.UID != "" && !liveUID[p.UID] {
			gone = append(gone, p.Name)
		}
	}
	if len(add) == 0 && len(gone) == 0 {
		return errors.Join(errs...)
	}
	st, unlock, err := lockState(name, dir)
	if err != nil {
		return err
	}
	defer unlock()
	for _, g := range gone {
		log.Info("pod gone", "pod", g)
	}
	drop := func(name string) bool {
		return slices.Contains(gone, name) || slices.ContainsFunc(add, func(a PodState) bool { return a.Name == name })
	}
	st.Pods = slices.DeleteFunc(st.Pods, func(p PodState) bool { return drop(p.Name) })
	st.Scenario.Pods = slices.DeleteFunc(st.Scenario.Pods, func(p Pod) bool {
		return slices.Contains(gone, p.Name) && !slices.ContainsFunc(add, func(a PodState) bool { return a.Name == p.Name })
	})
	for _, ps := range add {
		log.Info("pod running", "pod", ps.Namespace+"/"+ps.Name, "host", ps.Host, "addr", ps.Addr(), "netns", ps.Netns)
		st.Pods = append(st.Pods, ps)
		if !slices.ContainsFunc(st.Scenario.Pods, func(p Pod) bool { return p.Name == ps.Name }) {
			st.Scenario.Pods = append(st.Scenario.Pods, ps.Pod)
		}
	}
	if err := st.Save(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// waitRealPod waits until the pod recorder has recorded the pod (or, with
// present false, forgotten it).
func waitRealPod(ctx context.Context, st *State, p Pod, present bool) error {
	what := fmt.Sprintf("pod %s/%s recorded", p.Namespace, p.Name)
	if !present {
		what = fmt.Sprintf("pod %s/%s forgotten", p.Namespace, p.Name)
	}
	return waitFor(ctx, nil, 30*time.Second, what+" (DIR/logs/pods.log)", func(context.Context) error {
		cur, err := LoadState(st.Name, st.Dir)
		if err != nil {
			return err
		}
		ps, ok := cur.Pod(p.Name)
		if ok != present || (ok && ps.Namespace != p.Namespace) {
			return errors.New("not yet")
		}
		return nil
	})
}
