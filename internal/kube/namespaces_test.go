package kube

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/server"
)

const namespacesTopology = `
networks:
  - {name: pods, cidr: 10.0.0.0/16, blockSize: 28, default: true}
  - {name: secure, cidr: 10.1.0.0/16, blockSize: 28}
  - {name: vms, cidr: 10.2.0.0/16, blockSize: 28, namespaces: [openstack]}
topologies:
  - networks: [pods, secure, vms]
    groups:
      - {name: all}
`

// TestNamespaceController: a Namespace's annotation terrane.io/network
// becomes its default network; a change of the annotation follows, its
// removal or the Namespace's deletion clears it; a network the namespace
// may not have is refused with an Event on the Namespace; a default left by
// a namespace deleted while no controller ran is cleared at start.
func TestNamespaceController(t *testing.T) {
	_, cs := testCluster(t)
	ctx := testCtx(t)
	state := testState(t)
	if _, err := state.ApplyTopology(ctx, api.TopologyRequest{Topology: namespacesTopology}); err != nil {
		t.Fatal(err)
	}
	// A default for a namespace that does not exist (deleted while no
	// controller ran).
	if _, err := state.SetNamespaceNetwork(ctx, "gone", "secure"); err != nil {
		t.Fatal(err)
	}
	run, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		NewNamespaceController(NamespaceControllerOptions{Client: cs, Log: quietLog()}).Run(run, state)
	}()
	t.Cleanup(func() { stop(); <-done })

	wantDefault(t, state, "gone", "")
	createNamespace(t, ctx, cs, "payments", map[string]string{NetworkAnnotation: "secure"})
	wantDefault(t, state, "payments", "secure")

	annotate(t, ctx, cs, "payments", map[string]string{NetworkAnnotation: "pods"})
	wantDefault(t, state, "payments", "pods")

	// vms admits only openstack: refused, with an Event, and the stale
	// default cleared.
	annotate(t, ctx, cs, "payments", map[string]string{NetworkAnnotation: "vms"})
	wantDefault(t, state, "payments", "")
	eventually(t, 20*time.Second, func() string {
		evs, err := cs.CoreV1().Events(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Namespace,involvedObject.name=payments"})
		if err != nil {
			return err.Error()
		}
		for _, e := range evs.Items {
			if e.Reason == ReasonNetworkRefused {
				return ""
			}
		}
		return fmt.Sprintf("no %s event on namespace payments (%d events)", ReasonNetworkRefused, len(evs.Items))
	})

	createNamespace(t, ctx, cs, "openstack", map[string]string{NetworkAnnotation: "vms"})
	wantDefault(t, state, "openstack", "vms")
	annotate(t, ctx, cs, "openstack", map[string]string{})
	wantDefault(t, state, "openstack", "")

	annotate(t, ctx, cs, "payments", map[string]string{NetworkAnnotation: "secure"})
	wantDefault(t, state, "payments", "secure")
	if err := cs.CoreV1().Namespaces().Delete(ctx, "payments", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	wantDefault(t, state, "payments", "")
}

func createNamespace(t *testing.T, ctx context.Context, cs kubernetes.Interface, name string, annotations map[string]string) {
	t.Helper()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

func annotate(t *testing.T, ctx context.Context, cs kubernetes.Interface, name string, annotations map[string]string) {
	t.Helper()
	ns, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Annotations = annotations
	if _, err := cs.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("annotate namespace %s: %v", name, err)
	}
}

func wantDefault(t *testing.T, state *server.State, ns, network string) {
	t.Helper()
	eventually(t, 20*time.Second, func() string {
		have, err := state.NamespaceNetworks(context.Background())
		if err != nil {
			return err.Error()
		}
		if have[ns] != network {
			return fmt.Sprintf("namespace %s defaults to %q, want %q", ns, have[ns], network)
		}
		return ""
	})
}
