package kubernetes

import (
	"context"
	"fmt"
	"io/fs"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/terrane-net/terrane/deploy/kubernetes/crds"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRDs creates or updates the store's CustomResourceDefinitions
// (deploy/kubernetes/crds) and waits until the API serves them. It needs
// the right to write CRDs, which a running Terrane server should not have:
// install them once, as an administrator, with this or kubectl apply.
// Only cfg's REST or Kubeconfig are used.
func InstallCRDs(ctx context.Context, cfg Config) error {
	rc, err := cfg.restConfig()
	if err != nil {
		return fmt.Errorf("install CRDs: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("install CRDs: %w", err)
	}
	files, err := fs.Glob(crds.FS, "*.yaml")
	if err != nil {
		return fmt.Errorf("install CRDs: %w", err)
	}
	for _, name := range files {
		data, err := fs.ReadFile(crds.FS, name)
		if err != nil {
			return fmt.Errorf("install CRDs: %w", err)
		}
		js, err := yaml.YAMLToJSON(data)
		if err != nil {
			return fmt.Errorf("install CRDs: %s: %w", name, err)
		}
		crd := &unstructured.Unstructured{}
		if err := crd.UnmarshalJSON(js); err != nil {
			return fmt.Errorf("install CRDs: %s: %w", name, err)
		}
		if err := applyCRD(ctx, dyn.Resource(crdGVR), crd); err != nil {
			return fmt.Errorf("install CRD %s: %w", crd.GetName(), err)
		}
	}
	return waitServed(ctx, dyn)
}

func applyCRD(ctx context.Context, res dynamic.NamespaceableResourceInterface, crd *unstructured.Unstructured) error {
	_, err := res.Create(ctx, crd, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	for {
		cur, err := res.Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			return err
		}
		crd.SetResourceVersion(cur.GetResourceVersion())
		_, err = res.Update(ctx, crd, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			return err
		}
	}
}

// waitServed polls until StoreRecords can be listed: a new CRD is served a
// moment after it is created.
func waitServed(ctx context.Context, dyn dynamic.Interface) error {
	for {
		_, err := dyn.Resource(recordsGVR).List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("install CRDs: list %s: %w", resource, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("install CRDs: %s not served yet: %w", CRDName, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
