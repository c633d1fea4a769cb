package labkube

import (
	"context"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
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
