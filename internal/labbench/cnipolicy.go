package labbench

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/terrane-net/terrane/internal/kube"
	"github.com/terrane-net/terrane/internal/lab"
	"github.com/terrane-net/terrane/internal/lab/labkube"
	"github.com/terrane-net/terrane/internal/policy"
)

// The terrane+policy configuration (CNIOptions.Policy). The lab runs a real
// etcd and kube-apiserver (lab up --k8s) and no kubelet: the benchmark is
// the kubelet. host-1's agent runs without policy (terrane, and ptp +
// host-local beside it); host-2's agent enforces NetworkPolicy from the
// API (terrane+policy). Both agents share the server, the store and the
// topology, so the ratio terrane+policy ÷ terrane is what enforcing policy
// adds to an ADD.
//
// Each round of terrane+policy is a kubelet's: the round's Pod objects,
// bound to host-2, are created first and the benchmark waits until its own
// watch of the API shows them all, as a kubelet sees a pod before it asks
// for its sandbox; only then do the timed ADDs start. Each ADD carries the
// Pod's K8S_POD_NAMESPACE, K8S_POD_NAME and K8S_POD_UID; the agent waits
// until its informer knows the pod, compiles the node's rule set and
// applies it to nftables before it installs the pod's route, all inside the
// timed ADD. After the round's ADDs (untimed) the benchmark checks that
// host-2's agent enforces the rule set isolating every pod of the round;
// after the DELs it deletes the Pod objects at once (no kubelet lingers on
// them) and waits until its watch shows them gone.

const (
	policyHost      = "host-2"
	policyNamespace = "bench"
	// podLabel selects the benchmark's pods (and deletes them).
	podLabel = "app=bench"
	// allowedPort is admitted between the benchmark's pods; deniedPort by
	// no policy.
	allowedPort = 8080
	deniedPort  = 9090
	// podWorkers create Pod objects in parallel.
	podWorkers = 8
)

// cniPolicyScenario is cniScenario with a second host and the benchmark's
// namespace and policies: every pod of the namespace is isolated both ways
// (default-deny), may talk to the namespace's other benchmark pods on
// 8080/TCP (ingress through the named port http) and may ask DNS in
// kube-system.
const cniPolicyScenario = `
name: bench-cni-policy
description: two hosts on a kube-apiserver; host-2's agent enforces NetworkPolicy
topology: |
  apiVersion: terrane.io/v1
  kind: Topology
  networks:
    - name: bench
      cidr: 10.10.0.0/16
      blockSize: 26
      default: true
  topologies:
    - networks: [bench]
      groups:
        - name: segment
          routing: l2
segments:
  - name: lan
    subnet: 192.168.10.0/24
hosts:
  - {name: host-1, segment: lan, ip: 192.168.10.11}
  - {name: host-2, segment: lan, ip: 192.168.10.12}
namespaces:
  - {name: bench, labels: {purpose: bench}}
policies:
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: default-deny, namespace: bench}
    spec:
      podSelector: {}
      policyTypes: [Ingress, Egress]
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: allow-bench-http, namespace: bench}
    spec:
      podSelector: {matchLabels: {app: bench}}
      policyTypes: [Ingress, Egress]
      ingress:
        - from: [{podSelector: {matchLabels: {app: bench}}}]
          ports: [{port: http, protocol: TCP}]
      egress:
        - to: [{podSelector: {matchLabels: {app: bench}}}]
          ports: [{port: 8080, protocol: TCP}]
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: allow-dns, namespace: bench}
    spec:
      podSelector: {}
      policyTypes: [Egress]
      egress:
        - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}}]
          ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]
`

// cniPolicies are the scenario's policies, as the result names them.
var cniPolicies = []string{"bench/default-deny", "bench/allow-bench-http", "bench/allow-dns"}

// withPolicyHost runs the lab on a kube-apiserver (binaries in kubeBins,
// "" for the lab's cache) without a kubelet, and host-1's agent without
// policy (later flags win over the lab's --policy kubernetes --kubeconfig).
func withPolicyHost(kubeBins string) func(*lab.UpOptions) {
	return func(u *lab.UpOptions) {
		u.K8s, u.NoKubelet, u.KubeBins = true, true, kubeBins
		u.HostAgentArgs = map[string][]string{cniHost: {"--policy=none", "--kubeconfig="}}
	}
}

// CNIPolicy describes the terrane+policy configuration and what the
// benchmark verified of it. A run whose verification fails returns an
// error, not a result.
type CNIPolicy struct {
	// Host's agent enforces the policies; PolicyOffHost's does not.
	Host          string   `json:"host"`
	PolicyOffHost string   `json:"policy_off_host"`
	Namespace     string   `json:"namespace"`
	Policies      []string `json:"policies"`
	// VerifiedRounds and VerifiedPods count the rounds (warm-up included)
	// after whose ADDs Host's agent enforced the rule set that isolates
	// every pod of the round: the digest in its policy.json equals the
	// benchmark's own compile of the API's cluster with the ADDs'
	// addresses. DigestAtOnce counts the rounds where it did at the first
	// read, right after the last ADD returned.
	VerifiedRounds int `json:"verified_rounds"`
	VerifiedPods   int `json:"verified_pods"`
	DigestAtOnce   int `json:"digest_at_once"`
	// Probes are the warm-up's TCP probes between two pods on each
	// terrane host: the allowed port reaches on both, the denied one only
	// where policy is off (whose agent, also checked, publishes no policy
	// status).
	Probes []PolicyProbe `json:"probes"`
}

// PolicyProbe is one pod-to-pod probe of the warm-up.
type PolicyProbe struct {
	Config  string `json:"config"`
	From    string `json:"from"`
	To      string `json:"to"`
	Port    int    `json:"port"`
	Reached bool   `json:"reached"`
}

// policyBench is the terrane+policy configuration of one run.
type policyBench struct {
	plugin *plugin
	res    CNIPolicy
}

// newPolicyBench makes host-2's plugin with its Pod objects and the
// warm-up probes of both terrane configurations (terrane is host-1's). Its
// watch of the API runs until ctx ends.
func newPolicyBench(ctx context.Context, st *lab.State, n lab.Names, terrane *plugin) (*policyBench, error) {
	h, ok := st.Scenario.Host(policyHost)
	if !ok {
		return nil, fmt.Errorf("the bench lab has no %s", policyHost)
	}
	p, err := terranePlugin(n, policyHost, "terrane+policy", "pol")
	if err != nil {
		return nil, err
	}
	view, err := labkube.PolicyView(ctx, st.Kube.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("watch the lab's API: %w", err)
	}
	cs, err := labkube.NewClient(st.Kube.Kubeconfig)
	if err != nil {
		return nil, err
	}
	pb := &policyBench{plugin: p, res: CNIPolicy{Host: policyHost, PolicyOffHost: cniHost, Namespace: policyNamespace, Policies: cniPolicies}}
	if _, err := os.Stat(n.PolicyStatusFile(cniHost)); err == nil {
		return nil, fmt.Errorf("%s's agent publishes a policy status (%s): it enforces policy, so terrane would not measure policy off", cniHost, n.PolicyStatusFile(cniHost))
	}
	p.kube = &podObjects{res: &pb.res, view: view, create1: func(ctx context.Context, spec labkube.PodSpec) (string, error) {
		return labkube.CreatePodUID(ctx, cs, spec)
	}, deleteAll: func(ctx context.Context) error {
		return labkube.DeletePodsNow(ctx, cs, policyNamespace, podLabel)
	}, node: policy.Node{Name: policyHost, IPs: []netip.Addr{h.IP}}, statusFile: n.PolicyStatusFile(policyHost)}
	p.probe = func(ctx context.Context, pods []benchPod) error { return pb.probe(ctx, p.name, pods, false) }
	terrane.probe = func(ctx context.Context, pods []benchPod) error { return pb.probe(ctx, terrane.name, pods, true) }
	return pb, nil
}

// probe connects from the first pod to the second on the allowed and the
// denied port; the denied port must reach exactly when policy is off.
func (pb *policyBench) probe(ctx context.Context, config string, pods []benchPod, policyOff bool) error {
	if len(pods) < 2 {
		return errors.New("the probe needs two pods")
	}
	targets := make([]lab.PortTarget, 2)
	for i := range targets {
		targets[i] = lab.PortTarget{Pod: pods[i].namespace + "/" + pods[i].name, Netns: pods[i].netns, Addr: pods[i].addr}
	}
	rep, err := lab.ProbePorts(ctx, targets, []lab.PortSpec{{Port: allowedPort, Protocol: "TCP"}, {Port: deniedPort, Protocol: "TCP"}})
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	probes, err := checkProbes(config, targets[0].Pod, targets[1].Pod, rep.Results, policyOff)
	pb.res.Probes = append(pb.res.Probes, probes...)
	return err
}

// checkProbes picks the probes from → to out of results and checks them:
// the allowed port reaches, the denied port reaches exactly when policy is
// off.
func checkProbes(config, from, to string, results []lab.PortResult, policyOff bool) ([]PolicyProbe, error) {
	var (
		out  []PolicyProbe
		errs []error
	)
	seen := map[int]bool{}
	for _, r := range results {
		if r.From != from || r.To != to || r.Protocol != "TCP" {
			continue
		}
		seen[r.Port] = true
		out = append(out, PolicyProbe{Config: config, From: r.From, To: r.To, Port: r.Port, Reached: r.OK})
		if want := r.Port == allowedPort || policyOff; r.OK != want {
			errs = append(errs, fmt.Errorf("%s: %s → %s port %d/TCP: reached %v, want %v %s", config, r.From, r.To, r.Port, r.OK, want, r.Error))
		}
	}
	for _, port := range []int{allowedPort, deniedPort} {
		if !seen[port] {
			errs = append(errs, fmt.Errorf("%s: %s → %s port %d/TCP was not probed", config, from, to, port))
		}
	}
	return out, errors.Join(errs...)
}

// podObjects are a kubelet's part of a round: the Pod objects and the check
// that the node enforces their policy.
type podObjects struct {
	res        *CNIPolicy
	view       *kube.PolicySource
	create1    func(context.Context, labkube.PodSpec) (uid string, err error)
	deleteAll  func(context.Context) error
	node       policy.Node
	statusFile string
	// made are the keys (namespace/name) of the round's Pod objects.
	made []string
}

// create makes a Pod object, bound to the node, per pod of the round and
// points each pod's CNI arguments at it; it returns once the benchmark's
// watch shows them all.
func (k *podObjects) create(ctx context.Context, pods []benchPod) error {
	k.made = nil
	var (
		mu   sync.Mutex
		errs []error
		next = make(chan int)
		wg   sync.WaitGroup
	)
	for range min(podWorkers, len(pods)) {
		wg.Go(func() {
			for i := range next {
				p := &pods[i]
				name := p.rt.ContainerID
				uid, err := k.create1(ctx, labkube.PodSpec{Name: name, Namespace: policyNamespace, Node: k.node.Name,
					Labels: map[string]string{"app": "bench"}, Ports: []labkube.Port{{Name: "http", Port: allowedPort, Protocol: "TCP"}}})
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					k.made = append(k.made, policyNamespace+"/"+name)
				}
				mu.Unlock()
				p.namespace, p.name = policyNamespace, name
				p.rt = runtimeConf(p.rt.ContainerID, p.rt.NetNS, p.namespace, p.name, uid)
			}
		})
	}
	for i := range pods {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return k.await(ctx, "the round's Pods in the API", func() bool {
		for _, key := range k.made {
			if !k.has(key) {
				return false
			}
		}
		return true
	})
}

// remove deletes the round's Pod objects and waits until the watch shows
// them gone.
func (k *podObjects) remove(ctx context.Context) error {
	if len(k.made) == 0 {
		return nil
	}
	if err := k.deleteAll(ctx); err != nil {
		return err
	}
	return k.await(ctx, "the round's Pods deleted", func() bool {
		return !slices.ContainsFunc(k.made, k.has)
	})
}

// has reports whether the watch shows the Pod namespace/name.
func (k *podObjects) has(key string) bool {
	ns, name, _ := strings.Cut(key, "/")
	_, ok := k.view.Pod(ns, name)
	return ok
}

// await waits until cond holds, looking again at every change of the
// watched cluster.
func (k *podObjects) await(ctx context.Context, what string, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, lab.EnforceTimeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-k.view.Changed():
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// verify checks, after a round's ADDs, that the node's agent enforces the
// rule set that isolates every pod of the round: the digest it publishes
// equals the benchmark's own compile of the API's cluster, the round's pods
// at the addresses their ADDs returned.
func (k *podObjects) verify(ctx context.Context, pods []benchPod) error {
	c, err := k.view.Cluster()
	if err != nil {
		return err
	}
	rs, err := roundRuleSet(c, k.node, pods)
	if err != nil {
		return err
	}
	atOnce, err := awaitDigest(ctx, k.statusFile, rs.Digest(), lab.EnforceTimeout)
	if err != nil {
		return fmt.Errorf("%s's agent does not enforce the rule set of the round's %d pods: %w", k.node.Name, len(pods), err)
	}
	if atOnce {
		k.res.DigestAtOnce++
	}
	k.res.VerifiedRounds++
	k.res.VerifiedPods += len(pods)
	return nil
}

// roundRuleSet is node's rule set compiled from c, the round's pods at the
// addresses their ADDs returned (as the agent knows its own pods' before
// any status shows them). Each of them must be isolated both ways, or the
// benchmark would not measure enforcement.
func roundRuleSet(c *policy.Cluster, node policy.Node, pods []benchPod) (*policy.RuleSet, error) {
	addrs := map[string]netip.Addr{}
	for _, p := range pods {
		addrs[p.namespace+"/"+p.name] = p.addr
	}
	for i := range c.Pods {
		if a, ok := addrs[c.Pods[i].Key()]; ok && c.Pods[i].Node == node.Name {
			c.Pods[i].IPs = []netip.Addr{a}
		}
	}
	rs, err := policy.Compile(c, node)
	if err != nil {
		return nil, fmt.Errorf("compile %s's rule set: %w", node.Name, err)
	}
	isolated := map[string]bool{}
	for _, ep := range rs.Endpoints {
		isolated[ep.Pod] = ep.Ingress.Isolated && ep.Egress.Isolated
	}
	var missing []string
	for _, p := range pods {
		if key := p.namespace + "/" + p.name; !isolated[key] {
			missing = append(missing, key)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no policy isolates pod %s both ways on %s: the benchmark would not measure enforcement", strings.Join(missing, ", "), node.Name)
	}
	return rs, nil
}

// awaitDigest waits until the agent's policy status file holds the digest
// want; atOnce reports that its first read did.
func awaitDigest(ctx context.Context, statusFile, want string, timeout time.Duration) (atOnce bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for first := true; ; first = false {
		got, err := readDigest(statusFile)
		if err == nil && got == want {
			return first, nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return false, fmt.Errorf("%s: %w", statusFile, err)
			}
			return false, fmt.Errorf("%s holds digest %s, want %s", statusFile, got, want)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// readDigest is the digest an agent published (agent.PolicyStatus).
func readDigest(statusFile string) (string, error) {
	b, err := os.ReadFile(statusFile)
	if err != nil {
		return "", err
	}
	var st struct {
		Digest string `json:"digest"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return "", err
	}
	return st.Digest, nil
}

// newUID is a random UUID (version 4), as the API server gives a Pod.
func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
