package k8scp

import (
	"context"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/k8sbins"
)

// Without the binaries Start fails before spawning anything, naming the
// directory, the build command and the cost.
func TestStartWithoutBinaries(t *testing.T) {
	dir := t.TempDir()
	spawned := false
	_, err := Start(context.Background(), Options{Bins: dir, Dir: t.TempDir(), Spawn: func(string, []string, string) (Process, error) {
		spawned = true
		return nil, nil
	}})
	if err == nil || spawned {
		t.Fatalf("Start without binaries: %v (spawned %v)", err, spawned)
	}
	for _, want := range []string{"etcd and kube-apiserver not found in " + dir, k8sbins.BuildCommand, "minutes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestKubeconfigFile(t *testing.T) {
	got := string(KubeconfigFile("https://127.0.0.1:6443", "/x/ca.crt", "tok"))
	for _, want := range []string{"server: https://127.0.0.1:6443", "certificate-authority: /x/ca.crt", "token: tok", "current-context: terrane"} {
		if !strings.Contains(got, want) {
			t.Errorf("kubeconfig lacks %q:\n%s", want, got)
		}
	}
}
