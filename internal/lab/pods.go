package lab

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
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
