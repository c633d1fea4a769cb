package lab

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/kube"
	"github.com/terrane-net/terrane/internal/lab/labkube"
	"github.com/terrane-net/terrane/internal/policy"
	"github.com/terrane-net/terrane/internal/policy/manifest"
)

// Where a lab's agents read policy from (State.Policy).
const (
	// PolicyKubernetes: the lab's Kubernetes API (lab up --k8s).
	PolicyKubernetes = "kubernetes"
	// PolicyServer: the lab's Terrane server (terrane agent --policy
	// server), for a lab without Kubernetes whose scenario has namespaces,
	// policies, or pods with labels or ports.
	PolicyServer = "server"
)

// policySourceOf is where a lab brought up with o enforces policy from:
// "" when its agents enforce none.
func policySourceOf(o *UpOptions) string {
	switch {
	case o.K8s:
		return PolicyKubernetes
	case o.Scenario != nil && o.Scenario.hasPolicy():
		return PolicyServer
	}
	return ""
}

// hasPolicy reports whether the scenario says anything policy reads.
func (sc *Scenario) hasPolicy() bool {
	return len(sc.Namespaces)+len(sc.Policies) > 0 || slices.ContainsFunc(sc.Pods, func(p Pod) bool { return len(p.Labels)+len(p.Ports) > 0 })
}

// policyBackend is where a lab's policies and labels live and how the
// agents' source reads them: one implementation per source.
type policyBackend interface {
	// Cluster is the compiler's input as the agents' source reads it.
	Cluster(ctx context.Context) (*policy.Cluster, error)
	// Pod is one pod as the source reads it.
	Pod(ctx context.Context, namespace, name string) (policy.Pod, bool)
	Apply(ctx context.Context, objs []manifest.Object) error
	// Delete deletes NAMESPACE/NAME (a NetworkPolicy) or NAME (a
	// ClusterNetworkPolicy).
	Delete(ctx context.Context, ref string) error
	// Policies lists every policy as Delete names them.
	Policies(ctx context.Context) ([]string, error)
	// Label changes a pod's (name set) or a namespace's labels.
	Label(ctx context.Context, namespace, name string, ch api.LabelChange) error
}

// backendOf opens the lab's policy backend.
func backendOf(ctx context.Context, st *State) (policyBackend, error) {
	switch {
	case st.Kube != nil:
		view, err := labkube.PolicyView(ctx, st.Kube.Kubeconfig)
		if err != nil {
			return nil, err
		}
		dyn, err := labkube.Dynamic(st.Kube.Kubeconfig)
		if err != nil {
			return nil, err
		}
		cs, err := labkube.NewClient(st.Kube.Kubeconfig)
		if err != nil {
			return nil, err
		}
		return &kubeBackend{view: view, dyn: dyn, cs: cs}, nil
	case st.Policy == PolicyServer:
		c, err := AdminClient(st.names())
		if err != nil {
			return nil, err
		}
		return &serverBackend{c: c}, nil
	}
	return nil, errors.New("this lab's agents enforce no policy: bring it up with --k8s, or with a scenario that has namespaces, policies, or pods with labels or ports (e.g. --scenario policy)")
}

type kubeBackend struct {
	view *kube.PolicySource
	dyn  dynamic.Interface
	cs   kubernetes.Interface
}

func (b *kubeBackend) Cluster(context.Context) (*policy.Cluster, error) { return b.view.Cluster() }
func (b *kubeBackend) Pod(_ context.Context, ns, name string) (policy.Pod, bool) {
	return b.view.Pod(ns, name)
}
func (b *kubeBackend) Policies(ctx context.Context) ([]string, error) {
	return labkube.ListPolicies(ctx, b.dyn)
}

func (b *kubeBackend) Apply(ctx context.Context, objs []manifest.Object) error {
	for _, o := range objs {
		if err := labkube.ApplyPolicy(ctx, b.dyn, o.Raw); err != nil {
			return err
		}
	}
	return nil
}

func (b *kubeBackend) Delete(ctx context.Context, ref string) error {
	if ns, name, ok := strings.Cut(ref, "/"); ok {
		return labkube.DeletePolicy(ctx, b.dyn, "NetworkPolicy", ns, name)
	}
	return labkube.DeletePolicy(ctx, b.dyn, "ClusterNetworkPolicy", "", ref)
}

func (b *kubeBackend) Label(ctx context.Context, ns, name string, ch api.LabelChange) error {
	labels := map[string]*string{}
	for k, v := range ch.Set {
		labels[k] = &v
	}
	for _, k := range ch.Remove {
		labels[k] = nil
	}
	if name == "" {
		return labkube.LabelNamespace(ctx, b.cs, ns, labels)
	}
	return labkube.LabelPod(ctx, b.cs, ns, name, labels)
}

type serverBackend struct{ c *client.Client }

func (b *serverBackend) Cluster(ctx context.Context) (*policy.Cluster, error) {
	ps, err := b.c.Policy(ctx, 0, 0)
	if err != nil {
		return nil, err
	}
	return &ps.Cluster, nil
}

func (b *serverBackend) Pod(ctx context.Context, ns, name string) (policy.Pod, bool) {
	c, err := b.Cluster(ctx)
	if err != nil {
		return policy.Pod{}, false
	}
	for _, p := range c.Pods {
		if p.Namespace == ns && p.Name == name {
			return p, true
		}
	}
	return policy.Pod{}, false
}

func (b *serverBackend) Policies(ctx context.Context) ([]string, error) {
	c, err := b.Cluster(ctx)
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, np := range c.Policies {
		refs = append(refs, np.Key())
	}
	for _, cnp := range c.ClusterPolicies {
		refs = append(refs, cnp.Metadata.Name)
	}
	slices.Sort(refs)
	return refs, nil
}

func (b *serverBackend) Apply(ctx context.Context, objs []manifest.Object) error {
	_, err := b.c.ApplyPolicy(ctx, manifest.Apply(objs))
	return err
}

func (b *serverBackend) Delete(ctx context.Context, ref string) error {
	kind := "clusternetworkpolicies"
	if strings.Contains(ref, "/") {
		kind = "networkpolicies"
	}
	_, err := b.c.DeletePolicyObject(ctx, kind, ref)
	return err
}

func (b *serverBackend) Label(ctx context.Context, ns, name string, ch api.LabelChange) error {
	var err error
	if name == "" {
		_, err = b.c.LabelNamespace(ctx, ns, ch)
	} else {
		_, err = b.c.LabelWorkload(ctx, ns, name, ch)
	}
	return err
}

// applyScenarioPolicy writes the scenario's namespaces, pods' labels and
// ports and policies to the lab's server, before its pods start, in
// transactions of at most 128 objects.
func applyScenarioPolicy(ctx context.Context, st *State, c *client.Client) error {
	var reqs []api.PolicyApply
	n := 0
	next := func() *api.PolicyApply {
		if n%128 == 0 {
			reqs = append(reqs, api.PolicyApply{})
		}
		n++
		return &reqs[len(reqs)-1]
	}
	for _, ns := range st.Scenario.Namespaces {
		r := next()
		r.Namespaces = append(r.Namespaces, policy.Namespace{Name: ns.Name, Labels: ns.Labels})
	}
	for _, p := range st.Scenario.Pods {
		if len(p.Labels)+len(p.Ports) > 0 {
			r := next()
			r.Workloads = append(r.Workloads, workloadOf(p))
		}
	}
	for i, raw := range st.Scenario.Policies {
		o, err := manifest.Decode(raw)
		if err != nil {
			return fmt.Errorf("policies[%d]: %w", i, err)
		}
		one := manifest.Apply([]manifest.Object{o})
		r := next()
		r.NetworkPolicies = append(r.NetworkPolicies, one.NetworkPolicies...)
		r.ClusterNetworkPolicies = append(r.ClusterNetworkPolicies, one.ClusterNetworkPolicies...)
	}
	for _, r := range reqs {
		if _, err := c.ApplyPolicy(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// workloadOf is a lab pod as the server's policy source holds it.
func workloadOf(p Pod) api.Workload {
	w := api.Workload{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels}
	for _, pp := range p.Ports {
		w.Ports = append(w.Ports, policy.ContainerPort{Name: pp.Name, Port: int32(pp.Port), Protocol: policy.Protocol(pp.Protocol)})
	}
	return w
}

// writeWorkloads writes pods' labels and ports to the lab's server before
// they start.
func writeWorkloads(ctx context.Context, st *State, pods []Pod) error {
	c, err := AdminClient(st.names())
	if err != nil {
		return err
	}
	defer c.CloseIdleConnections()
	var req api.PolicyApply
	for _, p := range pods {
		req.Workloads = append(req.Workloads, workloadOf(p))
	}
	_, err = c.ApplyPolicy(ctx, req)
	return err
}
