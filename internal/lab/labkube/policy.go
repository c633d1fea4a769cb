package labkube

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	networkpolicyapi "github.com/terrane-net/terrane/deploy/kubernetes/network-policy-api"
	"github.com/terrane-net/terrane/internal/kube"
)

const fieldManager = "terrane-lab"

// resources are the kinds a lab scenario's policies may hold.
var resources = map[string]schema.GroupVersionResource{
	"NetworkPolicy":        {Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"},
	"ClusterNetworkPolicy": kube.ClusterNetworkPolicyResource,
}

// Dynamic is a dynamic client for the kubeconfig.
func Dynamic(kubeconfig string) (dynamic.Interface, error) {
	rc, err := kube.RESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return dynamic.NewForConfig(rc)
}

// InstallNetworkPolicyAPI installs the ClusterNetworkPolicy CRD and waits
// until the API serves it.
func InstallNetworkPolicyAPI(ctx context.Context, dyn dynamic.Interface) error {
	js, err := yaml.YAMLToJSON(networkpolicyapi.CRD)
	if err != nil {
		return err
	}
	crd := &unstructured.Unstructured{}
	if err := crd.UnmarshalJSON(js); err != nil {
		return err
	}
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	if _, err := dyn.Resource(gvr).Apply(ctx, crd.GetName(), crd, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("install the ClusterNetworkPolicy CRD: %w", err)
	}
	for {
		_, err := dyn.Resource(kube.ClusterNetworkPolicyResource).List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("ClusterNetworkPolicies: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ClusterNetworkPolicies not served yet: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ApplyPolicy creates or updates one NetworkPolicy or ClusterNetworkPolicy
// (server-side apply), given as its JSON.
func ApplyPolicy(ctx context.Context, dyn dynamic.Interface, obj json.RawMessage) error {
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(obj); err != nil {
		return err
	}
	gvr, ok := resources[u.GetKind()]
	if !ok {
		return fmt.Errorf("kind %q: a lab applies NetworkPolicy and ClusterNetworkPolicy", u.GetKind())
	}
	var res dynamic.ResourceInterface = dyn.Resource(gvr)
	if u.GetKind() == "NetworkPolicy" {
		res = dyn.Resource(gvr).Namespace(u.GetNamespace())
	}
	if _, err := res.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("apply %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return nil
}

// DeletePolicy deletes a NetworkPolicy (namespace/name) or a
// ClusterNetworkPolicy (name).
func DeletePolicy(ctx context.Context, dyn dynamic.Interface, kind, namespace, name string) error {
	gvr, ok := resources[kind]
	if !ok {
		return fmt.Errorf("kind %q: use NetworkPolicy or ClusterNetworkPolicy", kind)
	}
	var res dynamic.ResourceInterface = dyn.Resource(gvr)
	if kind == "NetworkPolicy" {
		res = dyn.Resource(gvr).Namespace(namespace)
	}
	return res.Delete(ctx, name, metav1.DeleteOptions{})
}

// EnsureNamespaceLabels creates the namespace or sets its labels (a nil
// value removes a label).
func EnsureNamespaceLabels(ctx context.Context, cs kubernetes.Interface, name string, labels map[string]*string) error {
	if err := EnsureNamespace(ctx, cs, name); err != nil {
		return err
	}
	return patchLabels(ctx, func(p []byte) error {
		_, err := cs.CoreV1().Namespaces().Patch(ctx, name, "application/merge-patch+json", p, metav1.PatchOptions{})
		return err
	}, labels)
}

// LabelNamespace sets an existing namespace's labels (a nil value removes
// a label).
func LabelNamespace(ctx context.Context, cs kubernetes.Interface, name string, labels map[string]*string) error {
	return patchLabels(ctx, func(p []byte) error {
		_, err := cs.CoreV1().Namespaces().Patch(ctx, name, "application/merge-patch+json", p, metav1.PatchOptions{})
		return err
	}, labels)
}

// LabelPod sets a Pod's labels (a nil value removes a label).
func LabelPod(ctx context.Context, cs kubernetes.Interface, namespace, name string, labels map[string]*string) error {
	return patchLabels(ctx, func(p []byte) error {
		_, err := cs.CoreV1().Pods(namespace).Patch(ctx, name, "application/merge-patch+json", p, metav1.PatchOptions{})
		return err
	}, labels)
}

func patchLabels(_ context.Context, patch func([]byte) error, labels map[string]*string) error {
	if len(labels) == 0 {
		return nil
	}
	p, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	if err != nil {
		return err
	}
	return patch(p)
}

// containerPorts are a lab pod's ports as container ports.
func containerPorts(ports []Port) []corev1.ContainerPort {
	var out []corev1.ContainerPort
	for _, p := range ports {
		out = append(out, corev1.ContainerPort{Name: p.Name, ContainerPort: int32(p.Port), Protocol: corev1.Protocol(p.Protocol)})
	}
	return out
}

// Port is a port a lab pod serves.
type Port struct {
	Name     string
	Port     int
	Protocol string
}

// PolicyView follows the cluster as the agents' policy source reads it.
func PolicyView(ctx context.Context, kubeconfig string) (*kube.PolicySource, error) {
	src, err := kube.NewPolicySourceFor(kubeconfig, nil)
	if err != nil {
		return nil, err
	}
	if err := src.Run(ctx); err != nil {
		return nil, err
	}
	return src, nil
}
