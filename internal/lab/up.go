package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/fielderr"
)

// UpOptions configure Up.
type UpOptions struct {
	Name string
	// Dir is the lab directory (default DefaultDir(Name)).
	Dir      string
	Scenario *Scenario
	// Terrane is the terrane binary the lab runs (server, agents,
	// fabricd); PluginDir holds terrane-cni (default: Terrane's directory).
	Terrane, PluginDir string
	// Progress receives one line per step that takes time; nil discards.
	// With a Meter it gets only the lines within a step.
	Progress func(format string, args ...any)
	// Meter, when set, follows the run: it gets the steps, and counts
	// them and the pods made against the total Up works out first.
	Meter Meter
	// InfraOnly builds the namespaces, links, addresses and router underlay
	// routes, and starts nothing.
	InfraOnly bool
	// AgentArgs are extra flags for every agent (e.g. --ebpf).
	AgentArgs []string
	// HostAgentArgs are extra flags for one host's agent, after AgentArgs
	// and the lab's own (a later flag wins: --policy=none --kubeconfig=
	// turns a --k8s host's policy off).
	HostAgentArgs map[string][]string
	// K8s runs a kube-apiserver: every host a Node, the server on the
	// Kubernetes store with the Node and Namespace controllers, pods as
	// Pod objects wired by a kubelet.
	K8s bool
	// Kubelet is KubeletLab (default) or KubeletReal.
	Kubelet string
	// NoKubelet runs no kubelet with K8s (Kubelet becomes KubeletNone): the
	// Nodes are registered, and Pods bound to the hosts are the caller's
	// to wire. The scenario may have no pods.
	NoKubelet bool
	// NodeGrace is how long the server keeps a deleted Node's host
	// (default DefaultNodeGrace).
	NodeGrace time.Duration
	// KubeBins is the Kubernetes binaries' directory (default
	// k8sbins.Dir()); missing ones are built.
	KubeBins string
}

// ErrExists: a lab of that name is already there.
var ErrExists = errors.New("lab exists")

// CheckEnvironment reports what the lab needs and lacks: root and the ip
// command.
func CheckEnvironment() error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root: it creates network namespaces, bridges and veth pairs (run it with sudo); `terrane plan --topology FILE` shows the same addressing and routes without root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("the lab needs the ip command: apt-get install iproute2 (scripts/lab.sh installs everything)")
	}
	return nil
}

// Up builds a lab: the fabric, routers and hosts; the server, the topology,
// one agent per host and fabricd; then the scenario's pods, through libcni.
// It returns when the routers carry the routes of the final state. On
// error the lab is left as it is, for its logs: Down removes it.
func Up(ctx context.Context, o UpOptions) (*State, error) {
	if err := ValidateName(o.Name); err != nil {
		return nil, err
	}
	n := Names{Lab: o.Name, Dir: o.Dir}
	if n.Dir == "" {
		n.Dir = DefaultDir(o.Name)
	}
	if isLabDir(n.Dir) || len(labNetns(n.Prefix())) > 0 {
		return nil, fmt.Errorf("%w: a lab named %q is there (%s, namespaces %s*); run `terrane lab down --name %s` first", ErrExists, o.Name, n.Dir, n.Prefix(), o.Name)
	}
	for _, h := range o.Scenario.Hosts {
		// sun_path holds 108 bytes with the terminating NUL.
		if p := n.AgentSocket(h.Name); len(p) > 107 {
			return nil, fmt.Errorf("lab directory %s is too long: host %s's agent socket %s exceeds the 107 bytes of a unix socket path; pick a shorter --dir", n.Dir, h.Name, p)
		}
	}
	var speakers map[string]hostSpeaker
	if o.Scenario.BGPRouters() && !o.InfraOnly {
		if err := checkRouterDaemons(o.Scenario, n); err != nil {
			return nil, err
		}
		t, err := o.Scenario.Compile()
		if err != nil {
			return nil, err
		}
		speakers = hostSpeakers(o.Scenario, t)
	}
	progress := o.Progress
	if progress == nil {
		progress = func(string, ...any) {}
	}
	if err := checkKubeOptions(&o); err != nil {
		return nil, err
	}
	um := &upMeter{m: o.Meter, progress: progress, start: time.Now()}
	step := um.step
	var kube *KubeState
	if o.K8s && !o.InfraOnly {
		bins, err := kubeBinaries(ctx, o, um.note)
		if err != nil {
			return nil, err
		}
		kube = &KubeState{Bins: bins, Kubelet: o.Kubelet, NodeGrace: o.NodeGrace}
	}
	// The lab kubelet takes the lock to record the pods it wires: Up lets
	// go of it before waiting for them (unlock is idempotent).
	unlock, err := lockDir(n)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st := &State{Name: o.Name, Dir: n.Dir, Terrane: o.Terrane, PluginDir: o.PluginDir, AgentArgs: o.AgentArgs, HostAgentArgs: o.HostAgentArgs, Created: time.Now().UTC(), Scenario: o.Scenario, Kube: kube, Policy: policySourceOf(&o)}
	if err := st.Save(); err != nil {
		return nil, err
	}
	if o.Meter != nil {
		o.Meter.SetTotal(upUnits(st, o.InfraOnly))
	}
	if err := buildInfrastructure(ctx, st, step); err != nil {
		return st, err
	}
	if o.InfraOnly {
		um.finish()
		return st, nil
	}
	if _, err := pluginPath(st); err != nil {
		return st, err
	}
	if st.Scenario.BGPRouters() {
		// Before the agents: hosts connect to their router as they start.
		step("starting the BGP routers' daemons (%s)", routerDaemons(st.Scenario))
		if err := startRouterDaemons(ctx, st, speakers); err != nil {
			return st, err
		}
	}
	if vr, ok := st.Scenario.VPCRouter(); ok {
		// Before the server: its reconciler needs the endpoint.
		step("starting vpcd (a fake EC2 with route table %s, budget %d, mirrored into router %s)", vr.VPC.RouteTable, vr.VPC.Budget, vr.Name)
		if err := startVPCd(ctx, st); err != nil {
			return st, err
		}
	}
	if st.Kube != nil {
		step("starting etcd and kube-apiserver (root namespace, 127.0.0.1; binaries in %s)", st.Kube.Bins)
		if err := startKube(ctx, st); err != nil {
			return st, err
		}
		step("starting the server (Kubernetes store, Node and Namespace controllers, node grace %s, built-in CA, %s)", st.Kube.NodeGrace, n.ServerSocket())
	} else {
		step("starting the server (embedded store, built-in CA, %s)", n.ServerSocket())
	}
	c, err := startServer(ctx, st)
	if err != nil {
		return st, err
	}
	defer c.CloseIdleConnections()
	step("applying the topology")
	if _, err := c.ApplyTopology(ctx, api.TopologyRequest{Topology: st.Scenario.Topology}); err != nil {
		return st, fmt.Errorf("apply the topology: %w", err)
	}
	if st.Kube != nil {
		// After the topology: the Node controller places a Node at once
		// (before, it would wait for a topology and try again later).
		if st.Kube.Kubelet == KubeletReal {
			step("starting containerd and a real kubelet in every host's namespace; each registers its Node")
			if err := startRealNodes(ctx, st, um.note); err != nil {
				return st, err
			}
		} else {
			step("registering %d Nodes; the Node controller makes each a host", len(st.Scenario.Hosts))
			if err := registerNodes(ctx, st); err != nil {
				return st, err
			}
		}
		if err := waitHostsRegistered(ctx, st, c); err != nil {
			return st, err
		}
	}
	step("starting %d agents, one per host namespace", len(st.Scenario.Hosts))
	if err := startAgents(ctx, st, step); err != nil {
		return st, err
	}
	if st.Scenario.StaticRouters() {
		step("starting fabricd (the routers' routes follow the server)")
		if err := startFabricd(ctx, st); err != nil {
			return st, err
		}
	}
	if st.Kube != nil {
		if st.Kube.Kubelet != KubeletNone {
			step("starting the %s kubelet", st.Kube.Kubelet)
		}
		if err := startKubelets(ctx, st, um.note); err != nil {
			return st, err
		}
		// The kubelet records what it wires in the state from here on.
		unlock()
		if len(st.Scenario.Namespaces)+len(st.Scenario.Policies) > 0 {
			step("creating %d namespaces and applying %d policies", len(st.Scenario.Namespaces), len(st.Scenario.Policies))
			if err := applyPolicies(ctx, st); err != nil {
				return st, err
			}
		}
		if len(st.Scenario.Pods) > 0 {
			if st.Kube.Kubelet == KubeletReal {
				step("creating %d pods as Pod objects; the real kubelets run them (containerd, terrane-cni)", len(st.Scenario.Pods))
			} else {
				step("creating %d pods as Pod objects; the %s kubelet wires them through libcni", len(st.Scenario.Pods), st.Kube.Kubelet)
			}
			if err := createPods(ctx, st, st.Scenario.Pods); err != nil {
				return st, err
			}
			if st, err = sortPods(st); err != nil {
				return st, err
			}
		}
	} else if st.Policy == PolicyServer || len(st.Scenario.Pods) > 0 {
		if st.Policy == PolicyServer {
			step("writing %d namespaces, the pods' labels and %d policies to the server", len(st.Scenario.Namespaces), len(st.Scenario.Policies))
			if err := applyScenarioPolicy(ctx, st, c); err != nil {
				return st, err
			}
		}
		step("creating %d pods through libcni", len(st.Scenario.Pods))
		if err := addPods(ctx, st, st.Scenario.Pods, func() { um.add(1) }); err != nil {
			return st, err
		}
	}
	step("waiting for the routers to carry the final state")
	if err := WaitFabric(ctx, st, c); err != nil {
		return st, err
	}
	if err := WaitBGP(ctx, st, c); err != nil {
		return st, err
	}
	if err := WaitVPC(ctx, st, c); err != nil {
		return st, err
	}
	if st.Policy != "" {
		step("waiting until every agent enforces the policy (%s)", st.Policy)
		if _, err := WaitEnforced(ctx, st); err != nil {
			return st, err
		}
	}
	step("lab %q is up", st.Name)
	um.finish()
	if st.Kube != nil {
		um.note("kubectl: export KUBECONFIG=%s (kubectl is %s)", st.Kube.Kubeconfig, st.Kube.Kubectl())
	}
	return st, nil
}

// addPods creates pods in parallel (a few at a time, as a runtime starting
// a node's pods does) and records each in st as it succeeds; each, when
// set, is called once per pod made (under a lock: one call at a time).
func addPods(ctx context.Context, st *State, pods []Pod, each func()) error {
	n := st.names()
	for _, p := range pods {
		st.Netns = append(st.Netns, n.Pod(p.Name))
	}
	if err := st.Save(); err != nil {
		return err
	}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
		sem  = make(chan struct{}, 4)
		made = map[string]PodState{}
	)
	for _, p := range pods {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ps, err := addPod(ctx, st, p)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			made[p.Name] = ps
			if each != nil {
				each()
			}
		})
	}
	wg.Wait()
	for _, p := range pods { // scenario order
		if ps, ok := made[p.Name]; ok {
			st.Pods = append(st.Pods, ps)
		}
	}
	if err := st.Save(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// AddPod creates one more pod in a running lab: AddPodSaying (pods.go)
// with nothing said.
func AddPod(ctx context.Context, name, dir string, pod Pod) (*PodState, error) {
	return AddPodSaying(ctx, name, dir, pod, nil)
}

// podErrors renames the scenario path of an added pod ("pods[6].host")
// to what the command line calls it ("pod.host").
func podErrors(at string, err error) error {
	var ve *fielderr.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	out := &fielderr.ValidationError{Subject: "pod"}
	for _, fe := range ve.Errors {
		if rest, ok := strings.CutPrefix(fe.Path, at); ok {
			fe.Path = strings.TrimPrefix(rest, ".")
			out.Errors = append(out.Errors, fe)
		}
	}
	if len(out.Errors) == 0 {
		return err
	}
	return out
}

// DelPod deletes a pod (CNI DEL on its host, then its namespace).
func DelPod(ctx context.Context, name, dir, pod string) error {
	st, unlock, err := lockState(name, dir)
	if err != nil {
		return err
	}
	defer unlock()
	ps, ok := st.Pod(pod)
	if !ok {
		return fmt.Errorf("no pod %q in lab %q", pod, name)
	}
	if st.Kube != nil {
		unlock() // the kubelet tears it down and updates the state
		return deletePod(ctx, st, ps)
	}
	err = delPod(ctx, st, ps)
	st.Pods = slices.DeleteFunc(st.Pods, func(p PodState) bool { return p.Name == pod })
	st.Scenario.Pods = slices.DeleteFunc(st.Scenario.Pods, func(p Pod) bool { return p.Name == pod })
	st.Netns = slices.DeleteFunc(st.Netns, func(s string) bool { return s == ps.Netns })
	if serr := st.Save(); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

// Targets are the lab's pods and VMs as probe targets, pods first.
func (s *State) Targets() []ProbeTarget {
	out := make([]ProbeTarget, 0, len(s.Pods)+len(s.VMs))
	for _, p := range s.Pods {
		t := ProbeTarget{Name: p.Name, Kind: "pod", Host: p.Host, Netns: p.Netns, Addr: p.Addr()}
		for _, a := range p.Addrs[min(1, len(p.Addrs)):] {
			if a.Addr().Is4() != t.Addr.Is4() && !t.Addr6.IsValid() {
				t.Addr6 = a.Addr() // a dual-stack pod's other family
			}
		}
		out = append(out, t)
	}
	for _, v := range s.VMs {
		out = append(out, ProbeTarget{Name: v.Name, Kind: "vm", Host: v.Host, Netns: v.Netns, Addr: v.Addr})
	}
	return out
}
