package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/client/clienttest"
)

// TestCtlPolicy: ctl policy apply reads a manifest as kubectl would (a bad
// document is refused naming it and its field, and nothing is written),
// ctl label sets and removes labels, ctl policy get shows it all, and ctl
// policy delete removes a policy — on a real server.
func TestCtlPolicy(t *testing.T) {
	isolate(t)
	srv := clienttest.Start(t)
	l := srv.PKI
	a := []string{"--server", srv.URL, "--ca", l.CA.Cert, "--cert", l.Admin.Cert, "--key", l.Admin.Key}
	cmd := func(args ...string) []string { return append(append([]string{}, a...), args...) }
	file := func(text string) string {
		f := filepath.Join(t.TempDir(), "policy.yaml")
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	const np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-from-web, namespace: shop}\nspec:\n  podSelector: {matchLabels: {role: db}}\n  ingress: [{from: [{podSelector: {matchLabels: {role: web}}}]}]\n"
	const cnp = "apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: no-metadata}\nspec:\n  tier: Admin\n  priority: 10\n  subject: {namespaces: {}}\n  egress: [{action: Deny, to: [{networks: [169.254.169.254/32]}]}]\n"
	failCtl(t, cmd("policy", "apply", file(np+"---\n"+strings.Replace(np, "role: web", "role: -web", 1))),
		"document 2", "spec.ingress[0].from[0].podSelector.matchLabels[role]")
	failCtl(t, cmd("policy", "apply", file("kind: Service\n")), "document 1", "kind", "give NetworkPolicy")
	if got := jsonOf(t, mustCtl(t, cmd("policy", "get", "-o", "json")...)); got["cluster"].(map[string]any)["policies"] != nil {
		t.Fatalf("a refused apply wrote: %v", got)
	}

	out := mustCtl(t, cmd("policy", "apply", file(np+"---\n"+cnp))...)
	if !strings.Contains(out, "NetworkPolicy shop/db-from-web, ClusterNetworkPolicy no-metadata") {
		t.Errorf("apply: %s", out)
	}
	mustCtl(t, cmd("label", "workload", "shop/db-1", "role=db", "tier=data")...)
	mustCtl(t, cmd("label", "workload", "shop/db-1", "tier-")...)
	mustCtl(t, cmd("label", "namespace", "shop", "team=payments")...)
	failCtl(t, cmd("label", "workload", "db-1", "role=db"), "give NAMESPACE/NAME")
	failCtl(t, cmd("label", "pod", "shop/db-1", "role=db"), "label a namespace or a workload")
	failCtl(t, cmd("label", "workload", "shop/db-1", "role"), "KEY=VALUE")
	var lines []string
	for _, line := range strings.Split(mustCtl(t, cmd("policy", "get")...), "\n") {
		lines = append(lines, strings.Join(strings.Fields(line), " "))
	}
	out = strings.Join(lines, "\n")
	for _, want := range []string{"ClusterNetworkPolicy no-metadata Admin priority 10", "NetworkPolicy shop/db-from-web", "Namespace shop team=payments", "Workload shop/db-1 - - role=db\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("policy get lacks %q:\n%s", want, out)
		}
	}
	mustCtl(t, cmd("policy", "delete", "shop/db-from-web")...)
	failCtl(t, cmd("policy", "delete", "shop/db-from-web"), "does not exist")
	mustCtl(t, cmd("policy", "delete", "no-metadata")...)
	if got := jsonOf(t, mustCtl(t, cmd("policy", "get", "-o", "json")...)); got["cluster"].(map[string]any)["policies"] != nil || got["cluster"].(map[string]any)["clusterPolicies"] != nil {
		t.Errorf("after the deletes: %v", got)
	}
}
