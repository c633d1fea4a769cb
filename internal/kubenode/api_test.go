package kubenode

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// The node reads its Node with a kubeconfig's token and CA, as the lab's
// and k8stest's kubeconfigs give them.
func TestAPIReaderReadsNode(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/api/v1/nodes/host-1":
			fmt.Fprint(w, `{"metadata":{"labels":{"zone":"a"}},"status":{"conditions":[{"type":"MemoryPressure","status":"False"},{"type":"Ready","status":"True","reason":"KubeletReady","message":"ok"}],"addresses":[{"type":"InternalIP","address":"192.168.10.11"}]}}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: %s, certificate-authority: %s}
users:
- name: u
  user: {token: tok}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
`, srv.URL, ca), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := newAPIReader(kc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := r.node(context.Background(), "host-1")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Ready || st.Labels["zone"] != "a" || st.Addresses["InternalIP"] != "192.168.10.11" {
		t.Errorf("node status %+v", st)
	}
	if _, err := r.node(context.Background(), "host-9"); err == nil {
		t.Error("a missing Node was read")
	}
	if _, err := newAPIReader(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing kubeconfig was accepted")
	}
}
