package lab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/terrane-net/terrane/internal/client"
)

// podAnnotationsCapability is the runtimeConfig key containerd fills with
// the pod's annotations (cniapi.PodAnnotationsCapability).
const podAnnotationsCapability = "io.kubernetes.cri.pod-annotations"

// podIfName is the pod's interface, as Kubernetes names it.
const podIfName = "eth0"

// cniDirs are a host's CNI directories inside the lab directory.
func (n Names) CNIConfDir(host string) string { return filepath.Join(n.HostDir(host), "net.d") }
func (n Names) CNIBinDir(host string) string  { return filepath.Join(n.HostDir(host), "bin") }
func (n Names) CNIQueueDir(host string) string {
	return filepath.Join(n.HostDir(host), "cni-queue")
}

// runtimeConf is what containerd passes for a pod sandbox.
func runtimeConf(p PodState) *libcni.RuntimeConf {
	ann := map[string]string{}
	maps.Copy(ann, p.Annotations)
	args := [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", p.Namespace},
		{"K8S_POD_NAME", p.Name},
		{"K8S_POD_INFRA_CONTAINER_ID", p.ContainerID},
	}
	if p.UID != "" {
		args = append(args, [2]string{"K8S_POD_UID", p.UID})
	}
	return &libcni.RuntimeConf{
		ContainerID:    p.ContainerID,
		NetNS:          NetnsPath(p.Netns),
		IfName:         p.IfName,
		Args:           args,
		CapabilityArgs: map[string]any{podAnnotationsCapability: ann},
	}
}

// hostCNI loads a host's CNI configuration (the conflist the agent's
// --install-cni wrote) and a libcni instance over its plugin directory,
// with its result cache in the lab directory.
func hostCNI(n Names, host string) (*libcni.CNIConfig, *libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(n.CNIConfDir(host), []string{".conflist"})
	if err != nil || len(files) == 0 {
		return nil, nil, fmt.Errorf("host %s: no CNI conflist in %s (%v)", host, n.CNIConfDir(host), err)
	}
	list, err := libcni.ConfListFromFile(files[0])
	if err != nil {
		return nil, nil, fmt.Errorf("host %s: %w", host, err)
	}
	return libcni.NewCNIConfigWithCacheDir([]string{n.CNIBinDir(host)}, n.CNICache(), nil), list, nil
}

// inHost runs fn on a thread inside the host's namespace: the plugin
// libcni forks inherits it, as it inherits the host's namespace from a
// container runtime.
func inHost(n Names, host string, fn func() error) error {
	return ns.WithNetNSPath(NetnsPath(n.Node(host)), func(ns.NetNS) error { return fn() })
}

// addPod makes the pod's namespace and runs CNI ADD for it on its host.
// The namespace is recorded in st before it is made.
func addPod(ctx context.Context, st *State, pod Pod) (PodState, error) {
	return cniAdd(ctx, st, PodState{Pod: pod, Netns: st.names().Pod(pod.Name), ContainerID: "terrane-lab-" + st.Name + "-" + pod.Name, IfName: podIfName})
}

// cniAdd makes ps's namespace and runs CNI ADD for it on its host,
// filling in its addresses.
func cniAdd(ctx context.Context, st *State, ps PodState) (PodState, error) {
	n := st.names()
	pod := ps.Pod
	if err := ipBatch(ctx, "", []string{"netns add " + ps.Netns}); err != nil {
		return ps, err
	}
	if err := ipBatch(ctx, ps.Netns, []string{"link set lo up"}); err != nil {
		return ps, err
	}
	cni, list, err := hostCNI(n, pod.Host)
	if err != nil {
		return ps, err
	}
	var res types.Result
	err = inHost(n, pod.Host, func() error {
		var err error
		res, err = cni.AddNetworkList(ctx, list, runtimeConf(ps))
		return err
	})
	if err != nil {
		return ps, fmt.Errorf("pod %s: CNI ADD on %s: %w", pod.Name, pod.Host, err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return ps, fmt.Errorf("pod %s: CNI result: %w", pod.Name, err)
	}
	for _, ip := range r.IPs {
		if a, ok := netipFromIPNet(ip.Address.IP, ip.Address.Mask); ok {
			ps.Addrs = append(ps.Addrs, a)
		}
	}
	if len(ps.Addrs) == 0 {
		return ps, fmt.Errorf("pod %s: the CNI result holds no address", pod.Name)
	}
	return ps, nil
}

// delPod runs CNI DEL for the pod on its host and deletes its namespace.
func delPod(ctx context.Context, st *State, ps PodState) error {
	n := st.names()
	var errs []error
	cni, list, err := hostCNI(n, ps.Host)
	if err == nil {
		err = inHost(n, ps.Host, func() error { return cni.DelNetworkList(ctx, list, runtimeConf(ps)) })
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("pod %s: CNI DEL on %s: %w", ps.Name, ps.Host, err))
	}
	if err := ipBatch(ctx, "", []string{"netns del " + ps.Netns}); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func netipFromIPNet(ip net.IP, mask net.IPMask) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := mask.Size()
	a = a.Unmap()
	return netip.PrefixFrom(a, ones), true
}

// AddPodSaying creates one more pod in a running lab and, when it can
// reach the server, waits until the routers carry any route it changed.
// With --k8s it creates the Pod object and waits for the kubelet to wire
// it.
//
// With the server down the pod is still made: its host's agent gives it
// an address from the host's blocks, routed to local pods and to remote
// ones over the blocks the routers already carry. The routers' state
// follows the server's, so there is nothing to wait for until it returns:
// say (nil: nothing said) gets one line telling which it was.
func AddPodSaying(ctx context.Context, name, dir string, pod Pod, say func(format string, args ...any)) (*PodState, error) {
	if say == nil {
		say = func(string, ...any) {}
	}
	st, unlock, err := lockState(name, dir) // unlock is idempotent
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, ok := st.Pod(pod.Name); ok {
		return nil, fmt.Errorf("pod %q exists; delete it first (terrane lab del-pod %s)", pod.Name, pod.Name)
	}
	if _, ok := st.VM(pod.Name); ok {
		return nil, fmt.Errorf("%q is a VM's name; pods and VMs share the probe matrix, pick another", pod.Name)
	}
	// Check the pod as part of the scenario it joins.
	sc := *st.Scenario
	sc.Pods = append(slices.Clone(sc.Pods), pod)
	at := fmt.Sprintf("pods[%d]", len(sc.Pods)-1)
	if errs := sc.check(); len(errs) > 0 {
		return nil, podErrors(at, invalid(errs...))
	}
	pod = sc.Pods[len(sc.Pods)-1]
	if _, err := sc.Compile(); err != nil {
		return nil, podErrors(at, err)
	}
	if st.Kube != nil {
		unlock() // the kubelet records the pod
		if err := createPods(ctx, st, []Pod{pod}); err != nil {
			return nil, err
		}
		if st, err = LoadState(name, dir); err != nil {
			return nil, err
		}
	} else {
		if len(pod.Labels)+len(pod.Ports) > 0 {
			if st.Policy != PolicyServer {
				return nil, errors.New("labels and ports are for policy, and this lab's agents enforce none: bring it up with --k8s, or with a scenario that has namespaces, policies, or pods with labels or ports")
			}
			if err := writeWorkloads(ctx, st, []Pod{pod}); err != nil {
				return nil, err
			}
		}
		if err := addPods(ctx, st, []Pod{pod}, nil); err != nil {
			return nil, err
		}
		st.Scenario.Pods = append(st.Scenario.Pods, pod)
		if err := st.Save(); err != nil {
			return nil, err
		}
	}
	ps, _ := st.Pod(pod.Name)
	if err := waitRoutersIfReachable(ctx, st, Names{Lab: name, Dir: dir}, say); err != nil {
		return nil, err
	}
	return &ps, nil
}

// waitRoutersIfReachable waits for the routers (fabricd's static routes,
// BGP, the VPC table) to carry the server's state, when the lab has any
// and the server answers; with the server unreachable it says so and
// waits for nothing.
func waitRoutersIfReachable(ctx context.Context, st *State, n Names, say func(string, ...any)) error {
	_, vpc := st.Scenario.VPCRouter()
	if !st.Scenario.StaticRouters() && !st.Scenario.BGPRouters() && !vpc {
		return nil // no routers: nothing follows the server
	}
	c, err := AdminClient(n)
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	hctx, cancel := context.WithTimeout(ctx, serverProbeTimeout)
	_, err = c.Health(hctx)
	cancel()
	if err != nil && client.Unreachable(err) {
		say("the server is unreachable (%v): not waiting for the routers; the pod reaches what its host's blocks already route to, the routers catch up when the server returns", err)
		return nil
	}
	say("waiting for the routers to carry the server's state")
	if err := WaitFabric(ctx, st, c); err != nil {
		return err
	}
	if err := WaitBGP(ctx, st, c); err != nil {
		return err
	}
	return WaitVPC(ctx, st, c)
}

// serverProbeTimeout bounds the question whether the server answers.
const serverProbeTimeout = 2 * time.Second
