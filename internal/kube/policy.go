package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/terrane-net/terrane/internal/policy"
)

// ClusterNetworkPolicyResource is the resource of
// sigs.k8s.io/network-policy-api's ClusterNetworkPolicy that the policy
// source watches when the cluster serves it.
var ClusterNetworkPolicyResource = schema.GroupVersionResource{Group: "policy.networking.k8s.io", Version: "v1beta1", Resource: "clusternetworkpolicies"}

// PolicySourceOptions configure a PolicySource.
type PolicySourceOptions struct {
	Client kubernetes.Interface
	// Dynamic reads ClusterNetworkPolicies; nil, or a cluster that does not
	// serve the resource, means none.
	Dynamic dynamic.Interface
	Log     *slog.Logger
}

// PolicySource follows what the policy compiler reads — NetworkPolicies,
// Pods, Namespaces, Nodes and ClusterNetworkPolicies — through informers
// and hands out the whole as a policy.Cluster. It is one of the two sources
// of policy (the other is the Terrane server) feeding the one compiler.
type PolicySource struct {
	o       PolicySourceOptions
	changed chan struct{}

	mu      sync.Mutex
	synced  bool
	pods    func() ([]*corev1.Pod, error)
	nps     func() ([]*networkingv1.NetworkPolicy, error)
	nss     func() ([]*corev1.Namespace, error)
	nodes   func() ([]*corev1.Node, error)
	cnps    func() []any
	podByNS func(ns, name string) (*corev1.Pod, error)
}

// NewPolicySource fills in o's defaults.
func NewPolicySource(o PolicySourceOptions) *PolicySource {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &PolicySource{o: o, changed: make(chan struct{}, 1)}
}

// Changed receives a value after any change to what Cluster returns
// (coalesced: one value stands for any number of changes).
func (s *PolicySource) Changed() <-chan struct{} { return s.changed }

func (s *PolicySource) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Run starts the informers and returns once their caches are synced (or ctx
// ends); they run until ctx ends.
func (s *PolicySource) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(s.o.Client, defaultResync)
	podInf := factory.Core().V1().Pods()
	npInf := factory.Networking().V1().NetworkPolicies()
	nsInf := factory.Core().V1().Namespaces()
	nodeInf := factory.Core().V1().Nodes()
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.notify() },
		UpdateFunc: func(any, any) { s.notify() },
		DeleteFunc: func(any) { s.notify() },
	}
	for _, inf := range []cache.SharedIndexInformer{podInf.Informer(), npInf.Informer(), nsInf.Informer(), nodeInf.Informer()} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return err
		}
	}
	syncs := []cache.InformerSynced{podInf.Informer().HasSynced, npInf.Informer().HasSynced, nsInf.Informer().HasSynced, nodeInf.Informer().HasSynced}
	cnps := func() []any { return nil }
	if s.o.Dynamic != nil && s.servesCNP() {
		df := dynamicinformer.NewDynamicSharedInformerFactory(s.o.Dynamic, defaultResync)
		inf := df.ForResource(ClusterNetworkPolicyResource).Informer()
		if _, err := inf.AddEventHandler(h); err != nil {
			return err
		}
		df.Start(ctx.Done())
		syncs = append(syncs, inf.HasSynced)
		cnps = inf.GetStore().List
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		return fmt.Errorf("policy source: informer caches did not sync: %w", ctx.Err())
	}
	s.mu.Lock()
	s.synced = true
	s.pods = func() ([]*corev1.Pod, error) { return podInf.Lister().List(labels.Everything()) }
	s.nps = func() ([]*networkingv1.NetworkPolicy, error) { return npInf.Lister().List(labels.Everything()) }
	s.nss = func() ([]*corev1.Namespace, error) { return nsInf.Lister().List(labels.Everything()) }
	s.nodes = func() ([]*corev1.Node, error) { return nodeInf.Lister().List(labels.Everything()) }
	s.cnps = cnps
	s.podByNS = func(ns, name string) (*corev1.Pod, error) { return podInf.Lister().Pods(ns).Get(name) }
	s.mu.Unlock()
	s.notify()
	return nil
}

// servesCNP reports whether the API server serves ClusterNetworkPolicies
// (their CRD is installed).
func (s *PolicySource) servesCNP() bool {
	res, err := s.o.Client.Discovery().ServerResourcesForGroupVersion(ClusterNetworkPolicyResource.GroupVersion().String())
	if err != nil {
		s.o.Log.Info("ClusterNetworkPolicies are not served; enforcing NetworkPolicies only", "err", err)
		return false
	}
	for _, r := range res.APIResources {
		if r.Name == ClusterNetworkPolicyResource.Resource {
			return true
		}
	}
	return false
}

// ErrNotSynced is returned before Run has synced the caches.
var ErrNotSynced = errors.New("policy source: not synced yet")

// Cluster is the cluster as the compiler reads it, from the caches. A
// policy that does not convert is left out and logged (the API server
// validated it, so that means a field this version does not know).
func (s *PolicySource) Cluster() (*policy.Cluster, error) {
	s.mu.Lock()
	synced, podsF, npsF, nssF, nodesF, cnpsF := s.synced, s.pods, s.nps, s.nss, s.nodes, s.cnps
	s.mu.Unlock()
	if !synced {
		return nil, ErrNotSynced
	}
	c := &policy.Cluster{}
	nss, err := nssF()
	if err != nil {
		return nil, err
	}
	for _, ns := range nss {
		c.Namespaces = append(c.Namespaces, policy.Namespace{Name: ns.Name, Labels: ns.Labels})
	}
	pods, err := podsF()
	if err != nil {
		return nil, err
	}
	for _, p := range pods {
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue // not running anywhere: no address to select
		}
		c.Pods = append(c.Pods, PolicyPod(p))
	}
	nodes, err := nodesF()
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		ni := policy.NodeInfo{Name: n.Name, Labels: n.Labels}
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil && (a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP) {
				ni.IPs = append(ni.IPs, ip)
			}
		}
		c.Nodes = append(c.Nodes, ni)
	}
	nps, err := npsF()
	if err != nil {
		return nil, err
	}
	for _, np := range nps {
		var out policy.NetworkPolicy
		if err := convert(np, &out); err != nil {
			s.o.Log.Warn("NetworkPolicy not enforced: it does not convert", "policy", np.Namespace+"/"+np.Name, "err", err)
			continue
		}
		if err := out.Validate(); err != nil {
			s.o.Log.Warn("NetworkPolicy not enforced", "policy", np.Namespace+"/"+np.Name, "err", err)
			continue
		}
		c.Policies = append(c.Policies, out)
	}
	for _, obj := range cnpsF() {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		var out policy.ClusterNetworkPolicy
		if err := convert(u.Object, &out); err != nil {
			s.o.Log.Warn("ClusterNetworkPolicy not enforced: it does not convert", "policy", u.GetName(), "err", err)
			continue
		}
		if err := out.Validate(); err != nil {
			s.o.Log.Warn("ClusterNetworkPolicy not enforced", "policy", u.GetName(), "err", err)
			continue
		}
		c.ClusterPolicies = append(c.ClusterPolicies, out)
	}
	return c, nil
}

// Pod returns one pod from the cache as the compiler reads it.
func (s *PolicySource) Pod(namespace, name string) (policy.Pod, bool) {
	s.mu.Lock()
	get := s.podByNS
	s.mu.Unlock()
	if get == nil {
		return policy.Pod{}, false
	}
	p, err := get(namespace, name)
	if err != nil {
		return policy.Pod{}, false
	}
	return PolicyPod(p), true
}

// WaitPod waits until the cache holds the pod (a CNI ADD can reach the
// agent before the pod's informer event does), or ctx ends.
func (s *PolicySource) WaitPod(ctx context.Context, namespace, name string) (policy.Pod, error) {
	for {
		if p, ok := s.Pod(namespace, name); ok {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return policy.Pod{}, fmt.Errorf("pod %s/%s is not in the policy source's cache: %w", namespace, name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PolicyPod is what the compiler reads of a Pod: its labels, node, status
// addresses and named container ports.
func PolicyPod(p *corev1.Pod) policy.Pod {
	out := policy.Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, Node: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork}
	for _, ip := range p.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			out.IPs = append(out.IPs, a)
		}
	}
	for _, c := range slices.Concat(p.Spec.InitContainers, p.Spec.Containers) {
		for _, cp := range c.Ports {
			out.Ports = append(out.Ports, policy.ContainerPort{Name: cp.Name, Port: cp.ContainerPort, Protocol: policy.Protocol(cp.Protocol)})
		}
	}
	return out
}

// convert moves an API object into the compiler's mirror of it through its
// JSON, which the mirror shares field for field.
func convert(in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// NewPolicySourceFor is a PolicySource on the cluster of a kubeconfig ("":
// the pod's ServiceAccount in the cluster).
func NewPolicySourceFor(kubeconfig string, log *slog.Logger) (*PolicySource, error) {
	rc, err := RESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return NewPolicySource(PolicySourceOptions{Client: cs, Dynamic: dyn, Log: log}), nil
}
