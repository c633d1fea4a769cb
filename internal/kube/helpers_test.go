package kube

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/k8stest"
	"github.com/terrane-net/terrane/internal/server"
	"github.com/terrane-net/terrane/internal/store/bolt"
)

const (
	agentNS    = "terrane-system"
	agentSA    = "terrane-agent"
	adminToken = "admin-token-0123456789abcdef"
)

const testTopology = `
networks:
  - {name: pods, cidr: 10.0.0.0/16, blockSize: 28, default: true}
topologies:
  - networks: [pods]
    groups:
      - name: zone-a
        assignment: {matchLabels: {topology.kubernetes.io/zone: a}}
        groups:
          - {name: rack-1, assignment: {matchLabels: {example.com/rack: "1"}}}
          - {name: rack-2, assignment: {matchLabels: {example.com/rack: "2"}}}
      - name: zone-b
        assignment: {matchLabels: {topology.kubernetes.io/zone: b}}
`

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testCluster is a real kube-apiserver and a clientset on it as admin.
func testCluster(t *testing.T) (*k8stest.Cluster, kubernetes.Interface) {
	t.Helper()
	c := k8stest.Start(t)
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	return c, cs
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// testState is a server state on a fresh bolt store with testTopology.
func testState(t *testing.T) *server.State {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "terrane.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	state, err := server.NewState(context.Background(), st, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := state.ApplyTopology(context.Background(), api.TopologyRequest{Topology: testTopology}); err != nil {
		t.Fatal(err)
	}
	return state
}

// serveAPI serves the control API on state with the admin token and auth.
func serveAPI(t *testing.T, state *server.State, auth server.Authenticator) string {
	t.Helper()
	admin, err := server.ParseTokens([]byte(adminToken + " admin ops\n"))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(server.NewAPI(state, server.AnyAuth{admin, auth}, quietLog()))
	t.Cleanup(hs.Close)
	return hs.URL
}

func createNode(t *testing.T, ctx context.Context, cs kubernetes.Interface, name, ip string, labels map[string]string) *corev1.Node {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if ip != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
	}
	created, err := cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	if ip != "" {
		// Status is a subresource: the create drops it.
		created.Status = n.Status
		if created, err = cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("node %s status: %v", name, err)
		}
	}
	return created
}
