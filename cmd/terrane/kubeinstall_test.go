package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestServerKubeInstallFlags: bad --kube-pki-secret and
// --kube-topology-configmap combinations are refused before anything
// talks to a cluster, naming the flag and the fix.
func TestServerKubeInstallFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--kube-topology-configmap", "terrane-topology"}, "want NAMESPACE/NAME"},
		{[]string{"--kube-topology-configmap", "a/b/c"}, "want NAMESPACE/NAME"},
		{[]string{"--kube-pki-secret", "terrane-pki", "--tls-cert", "x.crt"}, "drop --insecure, --tls-cert"},
		{[]string{"--kube-pki-secret", "terrane-pki", "--insecure"}, "drop --insecure"},
		{[]string{"--kube-pki-secret", "terrane-pki", "--kubeconfig", "/nonexistent/kubeconfig"}, "/nonexistent/kubeconfig"},
	} {
		root := newRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"server", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, tc.args...))
		err := root.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("server %s: %v, want an error containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
