package k8stest

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// TestControlPlane starts a control plane and uses it the way the
// Kubernetes store does: a namespace, a custom resource definition that
// becomes established, a custom resource in it, a compare-and-swap update
// on resourceVersion, and kubectl reading it back.
func TestControlPlane(t *testing.T) {
	c := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}

	nsGVR := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	ns := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "k8stest"},
	}}
	if _, err := dyn.Resource(nsGVR).Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}

	crdGVR := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": "widgets.k8stest.terrane.io"},
		"spec": map[string]any{
			"group": "k8stest.terrane.io",
			"scope": "Namespaced",
			"names": map[string]any{"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
			"versions": []any{map[string]any{
				"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object",
					"properties": map[string]any{
						"spec": map[string]any{"type": "object", "properties": map[string]any{
							"size": map[string]any{"type": "integer"},
						}},
					},
				}},
			}},
		},
	}}
	if _, err := dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create CRD: %v", err)
	}

	widgets := dyn.Resource(schema.GroupVersionResource{Group: "k8stest.terrane.io", Version: "v1", Resource: "widgets"}).Namespace("k8stest")
	w := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "k8stest.terrane.io/v1", "kind": "Widget",
		"metadata": map[string]any{"name": "w1"},
		"spec":     map[string]any{"size": int64(1)},
	}}
	// The new resource is served a moment after the CRD is created.
	var created *unstructured.Unstructured
	for {
		created, err = widgets.Create(ctx, w, metav1.CreateOptions{})
		if err == nil {
			break
		}
		if !apierrors.IsNotFound(err) || ctx.Err() != nil {
			t.Fatalf("create widget: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// An update naming a stale resourceVersion conflicts.
	stale := created.DeepCopy()
	created.Object["spec"] = map[string]any{"size": int64(2)}
	if _, err := widgets.Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update widget: %v", err)
	}
	stale.Object["spec"] = map[string]any{"size": int64(3)}
	if _, err := widgets.Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("update at a stale resourceVersion: %v, want a conflict", err)
	}

	out, err := c.RunKubectl(ctx, "get", "widgets", "-n", "k8stest", "-o", "jsonpath={.items[0].spec.size}")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != "2" {
		t.Fatalf("kubectl reads size %q, want 2", out)
	}
	out, err = c.RunKubectl(ctx, "version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Server Version: "+KubernetesVersion) {
		t.Fatalf("kubectl version = %q, want server %s", out, KubernetesVersion)
	}
}

// fatalTB records the message of the Fatalf that ends the goroutine.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// TestMissingBinariesSayHowToBuildThem: without the binaries a test fails
// (never skips) naming the directory and the build command.
func TestMissingBinariesSayHowToBuildThem(t *testing.T) {
	empty := t.TempDir()
	t.Setenv(BinsEnv, empty)
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(f)
	}()
	<-done
	for _, want := range []string{empty, BuildCommand, "not found"} {
		if !strings.Contains(f.msg, want) {
			t.Fatalf("Start without binaries failed with %q, want it to name %q", f.msg, want)
		}
	}
}
