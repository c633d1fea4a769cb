package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/k8stest"
)

// manifestPath is the one-file install, rendered from deploy/kubernetes.
const manifestPath = "../../deploy/kubernetes/terrane.yaml"

// TestInstallManifest proves deploy/kubernetes/terrane.yaml against a real
// kube-apiserver: every object passes a server-side dry run, then applies;
// two `terrane server` processes run as the Deployment's pods would — the
// Deployment's own args, the terrane-server ServiceAccount's own token,
// nothing more — and start at once: they agree on one CA in the Secret,
// publish it, apply the topology ConfigMap and register a Node; an agent
// with a projected-style token (audience terrane, bound to a pod on the
// node, the agent ServiceAccount) registers its host without labels over
// TLS checked against the published CA, and claims a block; the admin
// certificate in the Secret works with `terrane ctl`.
func TestInstallManifest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kubernetes control plane and server processes; skipped with -short")
	}
	isolate(t)
	c := k8stest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	docs := manifestDocs(t, manifest)

	// (a) A dry run of every object. Objects in terrane-system need the
	// namespace to exist: apply the manifest's own Namespace first.
	nsFile := filepath.Join(t.TempDir(), "namespace.yaml")
	if err := os.WriteFile(nsFile, docs["Namespace/terrane-system"], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RunKubectl(ctx, "apply", "--server-side", "-f", nsFile); err != nil {
		t.Fatal(err)
	}
	out, err := c.RunKubectl(ctx, "apply", "--server-side", "--dry-run=server", "-f", manifestPath)
	if err != nil {
		t.Fatalf("dry run of the manifest: %v\n%s", err, out)
	}
	if n := strings.Count(out, "serverside-applied (server dry run)"); n != len(docs) {
		t.Fatalf("dry run applied %d objects, the manifest holds %d:\n%s", n, len(docs), out)
	}
	// (b) The real apply.
	if out, err = c.RunKubectl(ctx, "apply", "--server-side", "-f", manifestPath); err != nil {
		t.Fatalf("apply the manifest: %v\n%s", err, out)
	}
	if n := strings.Count(out, "serverside-applied"); n != len(docs) {
		t.Fatalf("applied %d objects, the manifest holds %d:\n%s", n, len(docs), out)
	}

	// (c) The server as its pod runs it: the Deployment's args, with the
	// downward API's pod IP, a loopback port of its own (two replicas
	// share this machine, not a node each), and the in-cluster identity
	// as a kubeconfig: the terrane-server ServiceAccount's token.
	var dep appsv1.Deployment
	if err := yaml.UnmarshalStrict(docs["Deployment/terrane-server"], &dep); err != nil {
		t.Fatal(err)
	}
	ctr := dep.Spec.Template.Spec.Containers[0]
	if dep.Spec.Template.Spec.ServiceAccountName != "terrane-server" {
		t.Fatalf("the server runs as %q", dep.Spec.Template.Spec.ServiceAccountName)
	}
	const nodeIP = "127.0.0.1" // what status.podIP is with hostNetwork on the test's "node"
	args := podArgs(t, ctr, map[string]string{"status.podIP": nodeIP})
	listenAt := slices.IndexFunc(args, func(a string) bool { return strings.HasPrefix(a, "--listen=") })
	if listenAt < 0 || args[listenAt] != "--listen=0.0.0.0:7443" {
		t.Fatalf("the server's args have no --listen=0.0.0.0:7443: %q", args)
	}
	args[listenAt] = "--listen=127.0.0.1:0"
	saToken := serviceAccountToken(t, ctx, admin, "terrane-system", "terrane-server", "", nil)
	args = append(args, "--kubeconfig="+tokenKubeconfig(t, c, saToken))

	replicas := startReplicas(t, args, 2)

	// One CA, in the Secret and in the ConfigMap; each replica serves a
	// certificate from it for the Service's cluster IP and names.
	secret, err := admin.CoreV1().Secrets("terrane-system").Get(ctx, "terrane-pki", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the PKI Secret: %v", err)
	}
	caCM, err := admin.CoreV1().ConfigMaps("terrane-system").Get(ctx, "terrane-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the CA ConfigMap: %v", err)
	}
	if caCM.Data["ca.crt"] != string(secret.Data["ca.crt"]) || len(secret.Data["ca.key"]) == 0 {
		t.Fatal("the CA ConfigMap does not hold the Secret's CA certificate")
	}
	created := 0
	for _, r := range replicas {
		if strings.Contains(r.log(), "created=true") {
			created++
		}
	}
	if created != 1 {
		t.Fatalf("%d replicas created the Secret, want exactly 1:\n%s\n%s", created, replicas[0].log(), replicas[1].log())
	}
	svc, err := admin.CoreV1().Services("terrane-system").Get(ctx, "terrane-server", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile, adminCert, adminKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")
	// The files as docs/kubernetes.md has an admin take them.
	for f, key := range map[string]string{caFile: "ca.crt", adminCert: "admin.crt", adminKey: "admin.key"} {
		out, err := c.RunKubectl(ctx, "-n", "terrane-system", "get", "secret", "terrane-pki", "-o", `jsonpath={.data.`+strings.ReplaceAll(key, ".", `\.`)+`}`)
		if err != nil {
			t.Fatal(err)
		}
		data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
		if err != nil || !bytes.Equal(data, secret.Data[key]) {
			t.Fatalf("kubectl's jsonpath for %s gives %q (%v), not the Secret's", key, out, err)
		}
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(caCM.Data["ca.crt"]))
	for i, r := range replicas {
		leaf := servedCertificate(t, r.addr)
		for _, name := range []string{svc.Spec.ClusterIP, "terrane-server.terrane-system.svc", nodeIP} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
				t.Errorf("replica %d's certificate for %s: %v", i, name, err)
			}
		}
		waitReady(t, ctx, "https://"+r.addr, roots)
	}
	if t.Failed() {
		t.FailNow()
	}

	// The topology of the ConfigMap is applied; ctl with the Secret's
	// admin certificate reads it.
	topoCM, err := admin.CoreV1().ConfigMaps("terrane-system").Get(ctx, "terrane-topology", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctlArgs := func(url string, more ...string) []string {
		return append([]string{"--server", url, "--ca", caFile, "--cert", adminCert, "--key", adminKey}, more...)
	}
	url0 := "https://" + replicas[0].addr
	waitFor(t, 30*time.Second, func() string {
		out, _, err := ctl(t, ctlArgs(url0, "topology", "get")...)
		if err != nil {
			return err.Error()
		}
		if out != topoCM.Data["topology.yaml"] {
			return "the applied topology is not the ConfigMap's:\n" + out
		}
		return ""
	})

	// A Node becomes a host of the group every Linux node joins.
	createTestNode(t, ctx, admin, "node-1", "192.0.2.11", map[string]string{"kubernetes.io/os": "linux"})
	waitFor(t, 30*time.Second, func() string {
		out := mustCtl(t, ctlArgs(url0, "hosts", "list")...)
		if !strings.Contains(out, "node-1") || !strings.Contains(out, "cluster") {
			return "node-1 is not a host of group cluster:\n" + out
		}
		return ""
	})

	// The Node controller's Event on it (the server may record Events).
	waitFor(t, 30*time.Second, func() string {
		evs, err := admin.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=node-1,reason=TerraneHostRegistered"})
		if err != nil {
			return err.Error()
		}
		if len(evs.Items) == 0 {
			return "no TerraneHostRegistered Event on node-1"
		}
		return ""
	})

	// The agent of node-1, as its DaemonSet pod: a token of terrane-agent
	// for audience terrane, bound to a pod on node-1; TLS checked against
	// the published CA; no labels.
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(docs["DaemonSet/terrane-agent"], &ds); err != nil {
		t.Fatal(err)
	}
	audience := projectedAudience(t, ds.Spec.Template.Spec)
	agentArgs := podArgs(t, ds.Spec.Template.Spec.Containers[0], map[string]string{"spec.nodeName": "node-1", "status.hostIP": "192.0.2.11",
		"TERRANE_SERVER_SERVICE_HOST": "127.0.0.1", "TERRANE_SERVER_SERVICE_PORT_API": strings.TrimPrefix(replicas[1].addr, "127.0.0.1:")})
	if !slices.Contains(agentArgs, "--host=node-1") || !slices.Contains(agentArgs, "--ip=192.0.2.11") ||
		!slices.Contains(agentArgs, "--server=https://"+replicas[1].addr) {
		t.Fatalf("the agent's args: %q", agentArgs)
	}
	if sub, rest, err := newRootCommand().Find(agentArgs); err != nil || sub.Name() != "agent" || sub.ParseFlags(rest) != nil {
		t.Fatalf("terrane %s does not parse as the agent's flags: %v", strings.Join(agentArgs, " "), err)
	}
	installCNIAsInitContainer(t, ds.Spec.Template.Spec)
	agent1 := agentClient(t, ctx, admin, "node-1", audience, "https://"+replicas[1].addr, caFile)
	reg, err := agent1.RegisterHost(ctx, "node-1", api.HostRequest{IP: netip.MustParseAddr("192.0.2.11")})
	if err != nil {
		t.Fatalf("the agent registers node-1 without labels: %v", err)
	}
	if reg.Host.Labels["kubernetes.io/os"] != "linux" || reg.Host.Labels["terrane.io/managed-by"] != "node-controller" {
		t.Fatalf("node-1's labels after the agent registered: %v, want the Node's", reg.Host.Labels)
	}
	claim, err := agent1.ClaimBlock(ctx, "node-1", "pods")
	if err != nil {
		t.Fatal(err)
	}
	if !netip.MustParsePrefix("10.244.0.0/16").Contains(claim.Block.Addr()) || claim.Block.Bits() != 26 {
		t.Fatalf("node-1 claimed %s, want a /26 of 10.244.0.0/16", claim.Block)
	}
	var ae *client.APIError
	if _, err := agent1.RegisterHost(ctx, "node-2", api.HostRequest{IP: netip.MustParseAddr("192.0.2.12")}); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Fatalf("node-1's agent registers node-2: %v, want 403", err)
	}

	// An agent that comes before its Node can be placed waits: a refusal
	// the agent retries (400 naming no field), until the Node's labels
	// admit it.
	createTestNode(t, ctx, admin, "node-2", "192.0.2.12", nil)
	agent2 := agentClient(t, ctx, admin, "node-2", audience, url0, caFile)
	if _, err := agent2.RegisterHost(ctx, "node-2", api.HostRequest{IP: netip.MustParseAddr("192.0.2.12")}); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Field != "" {
		t.Fatalf("node-2's agent before its Node is placeable: %v, want 400 without a field (retried)", err)
	}
	n2, err := admin.CoreV1().Nodes().Get(ctx, "node-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n2.Labels = map[string]string{"kubernetes.io/os": "linux"}
	if _, err := admin.CoreV1().Nodes().Update(ctx, n2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() string {
		if _, err := agent2.RegisterHost(ctx, "node-2", api.HostRequest{IP: netip.MustParseAddr("192.0.2.12")}); err != nil {
			return err.Error()
		}
		return ""
	})
	// The agents report (nothing in use yet), as they do once started;
	// then the admin's audit, through the Secret's certificate, is clean.
	for host, a := range map[string]*client.Client{"node-1": agent1, "node-2": agent2} {
		if _, err := a.ReportAddresses(ctx, host, api.AddressReport{Full: true}); err != nil {
			t.Fatalf("%s's agent reports: %v", host, err)
		}
	}
	mustCtl(t, ctlArgs(url0, "check")...)
}
