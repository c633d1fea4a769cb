package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/client/clienttest"
	"github.com/terrane-net/terrane/internal/k8stest"
)

// TestServerOnKubernetesStore runs `terrane server --store kubernetes`
// against a real kube-apiserver: it installs the CRD, serves the API with
// its state in StoreRecord objects that kubectl shows, and a restarted
// server finds that state again.
func TestServerOnKubernetesStore(t *testing.T) {
	c, ctx := kubeServerTest(t)
	args := "server --insecure --listen 127.0.0.1:0 --data-dir " + t.TempDir() +
		" --store kubernetes --kubeconfig " + c.Kubeconfig + " --kube-install-crds"
	p := startServerWith(t, args, "http://")

	topo := writeTopology(t, clienttest.Topology)
	mustCtl(t, "--server", p.url, "topology", "apply", topo)
	mustCtl(t, "--server", p.url, "hosts", "register", "n1", "--ip", "192.0.2.1", "--label", "rack=1")

	out, err := c.RunKubectl(ctx, "get", "storerecords", "-n", "terrane-system")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"v1/topology", "v1/hosts/n1", "head"} {
		if !strings.Contains(out, want) {
			t.Fatalf("kubectl get storerecords lacks %q:\n%s", want, out)
		}
	}

	// A new server process (without --kube-install-crds) serves the same
	// state.
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p = startServerWith(t, "server --insecure --listen 127.0.0.1:0 --data-dir "+t.TempDir()+
		" --store kubernetes --kubeconfig "+c.Kubeconfig, "http://")
	if out := mustCtl(t, "--server", p.url, "hosts", "list"); !strings.Contains(out, "n1") {
		t.Fatalf("hosts list after a restart:\n%s", out)
	}
	if out := mustCtl(t, "--server", p.url, "topology", "get"); out != clienttest.Topology {
		t.Fatalf("topology get after a restart:\n%s", out)
	}

	// bench store on the same API: a namespace of its own, left empty.
	if _, err := c.RunKubectl(ctx, "create", "namespace", "terrane-bench"); err != nil {
		t.Fatal(err)
	}
	bargs := []string{"--backend", "kubernetes", "--kubeconfig", c.Kubeconfig, "--kube-namespace", "terrane-bench",
		"--hosts", "12", "--clients", "3", "--endpoints-per-host", "70"}
	nums, info := benchJSON(t, bargs...)
	if nums["claims"] < 24 || !strings.Contains(info, "Kubernetes API, namespace terrane-bench") {
		t.Fatalf("bench on kubernetes: %v\n%s", nums, info)
	}
	t.Logf("bench store on kubernetes: %.0f claims/s, p50 %.1f ms, p99 %.1f ms", nums["claims_per_second"], nums["claim_p50_ms"], nums["claim_p99_ms"])
	// Deleted records stay as tombstones (until a compaction): every
	// object but the head must be one.
	out, err = c.RunKubectl(ctx, "get", "storerecords", "-n", "terrane-bench", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.spec.deleted}{"\n"}{end}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line != "head " && !strings.HasSuffix(line, " true") {
			t.Fatalf("after the benchmark terrane-bench holds a live record: %q\n%s", line, out)
		}
	}
	// A second run refuses a namespace that is not empty.
	mustCtl(t, "--server", p.url, "hosts", "list") // (the server's namespace is untouched)
	if _, _, err := benchCmd(t, "store", "--backend", "kubernetes", "--kubeconfig", c.Kubeconfig, "--hosts", "2"); err == nil ||
		!strings.Contains(err.Error(), "already holds") {
		t.Fatalf("bench store in the server's non-empty namespace: %v, want a refusal", err)
	}
}

// kubeServerTest is a real Kubernetes control plane, with the namespace
// terrane-system, for a test that runs `terrane server` processes against
// it, and a context bounding the test; skipped with -short.
func kubeServerTest(t *testing.T) (*k8stest.Cluster, context.Context) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a Kubernetes control plane and server processes; skipped with -short")
	}
	isolate(t)
	c := k8stest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	if _, err := c.RunKubectl(ctx, "create", "namespace", "terrane-system"); err != nil {
		t.Fatal(err)
	}
	return c, ctx
}
