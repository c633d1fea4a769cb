package main

import (
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/client/clienttest"
)

// TestServerKubeNodes runs `terrane server --kube-nodes` against a real
// kube-apiserver: a Node created with kubectl becomes a host with its
// labels, and `ctl hosts list` shows it.
func TestServerKubeNodes(t *testing.T) {
	c, ctx := kubeServerTest(t)
	p := startServerWith(t, "server --insecure --listen 127.0.0.1:0 --data-dir "+t.TempDir()+
		" --kube-nodes --kube-node-grace 1s --kubeconfig "+c.Kubeconfig, "http://")
	mustCtl(t, "--server", p.url, "topology", "apply", writeTopology(t, clienttest.Topology))
	node := writeTopology(t, "apiVersion: v1\nkind: Node\nmetadata:\n  name: k1\n  labels: {rack: \"2\"}\n")
	if _, err := c.RunKubectl(ctx, "create", "-f", node); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := mustCtl(t, "--server", p.url, "hosts", "list")
		if strings.Contains(out, "k1") && strings.Contains(out, "rack-2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Node k1 is no host in rack-2:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := c.RunKubectl(ctx, "get", "lease", "-n", "terrane-system", "terrane-node-controller"); err != nil {
		t.Fatalf("no leader-election Lease: %v", err)
	}
}
