package labkube

import (
	"context"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// ListPolicies lists every NetworkPolicy (as NAMESPACE/NAME) and every
// ClusterNetworkPolicy (as NAME) the API holds, sorted.
func ListPolicies(ctx context.Context, dyn dynamic.Interface) ([]string, error) {
	var refs []string
	nps, err := dyn.Resource(resources["NetworkPolicy"]).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, p := range nps.Items {
		refs = append(refs, p.GetNamespace()+"/"+p.GetName())
	}
	cnps, err := dyn.Resource(resources["ClusterNetworkPolicy"]).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for _, p := range cnps.Items {
		refs = append(refs, p.GetName())
	}
	slices.Sort(refs)
	return refs, nil
}

// SetPodLabels makes a Pod's labels exactly want; changed says whether it
// had to patch.
func SetPodLabels(ctx context.Context, cs kubernetes.Interface, namespace, name string, want map[string]string) (bool, error) {
	pod, err := cs.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	d := labelDiff(pod.Labels, want)
	if len(d) == 0 {
		return false, nil
	}
	return true, LabelPod(ctx, cs, namespace, name, d)
}

// SetNamespaceLabels makes a namespace's labels exactly want, besides
// kubernetes.io/metadata.name, which the API server keeps; changed says
// whether it had to patch.
func SetNamespaceLabels(ctx context.Context, cs kubernetes.Interface, name string, want map[string]string) (bool, error) {
	ns, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	want = maps.Clone(want)
	if want == nil {
		want = map[string]string{}
	}
	want[corev1.LabelMetadataName] = name
	d := labelDiff(ns.Labels, want)
	if len(d) == 0 {
		return false, nil
	}
	return true, LabelNamespace(ctx, cs, name, d)
}

// labelDiff is the merge patch of labels that turns have into want (a nil
// value removes a label).
func labelDiff(have, want map[string]string) map[string]*string {
	d := map[string]*string{}
	for k := range have {
		if _, ok := want[k]; !ok {
			d[k] = nil
		}
	}
	for k, v := range want {
		if h, ok := have[k]; !ok || h != v {
			d[k] = &v
		}
	}
	return d
}
