package k8sbins

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const kubernetesGoMod = `module k8s.io/kubernetes

go 1.25.0

require (
	k8s.io/api v0.0.0
)

replace (
%s)
`

func fakeGoMod(n int) []byte {
	var r strings.Builder
	for i := range n {
		m := "k8s.io/mod" + string(rune('a'+i))
		r.WriteString("\t" + m + " => ./staging/src/" + m + "\n")
	}
	return []byte(strings.Replace(kubernetesGoMod, "%s", r.String(), 1))
}

func TestWrapperModulePinsEveryStagingModule(t *testing.T) {
	got, err := WrapperModule(fakeGoMod(22), "v1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	s := string(got)
	for _, want := range []string{"require k8s.io/kubernetes v1.37.2", "go 1.25.0", "\tk8s.io/moda => k8s.io/moda v0.37.2\n", "\tk8s.io/modv => k8s.io/modv v0.37.2\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("wrapper go.mod lacks %q:\n%s", want, s)
		}
	}
	if _, err := WrapperModule(fakeGoMod(3), "v1.37.2"); err == nil || !strings.Contains(err.Error(), "3 staging replaces") {
		t.Errorf("a go.mod with 3 staging replaces: %v, want an error counting them", err)
	}
}

func TestMissingAndEstimate(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, Etcd), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, Kubectl), []byte("not executable"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := Missing(dir, []string{Etcd, APIServer, Kubectl})
	if strings.Join(got, ",") != "kube-apiserver,kubectl" {
		t.Fatalf("Missing = %v, want kube-apiserver and kubectl (etcd is there, kubectl not executable)", got)
	}
	if e := Estimate(dir, []string{Etcd}); e != 0 {
		t.Errorf("Estimate of what is there = %s, want 0", e)
	}
	if e := Estimate(dir, ControlPlane); e != estimates[APIServer]+estimates[Kubectl]+resolveEstimate {
		t.Errorf("Estimate = %s", e)
	}
}

// TestEnsureCachedIsANoOp: everything there, nothing runs (not even go).
func TestEnsureCachedIsANoOp(t *testing.T) {
	dir := t.TempDir()
	for _, b := range []string{Etcd, Kubelet} {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Ensure(context.Background(), Options{Dir: dir, Binaries: []string{Etcd, Kubelet}, Go: "/nonexistent/go"})
	if err != nil || got != dir {
		t.Fatalf("Ensure = %q, %v; want %q, nil", got, err, dir)
	}
}

func TestEnsureWithoutGoSaysWhatItCosts(t *testing.T) {
	dir := t.TempDir()
	_, err := Ensure(context.Background(), Options{Dir: dir, Binaries: []string{Kubelet}, Go: "/nonexistent/go"})
	if err == nil {
		t.Fatal("Ensure without go succeeded")
	}
	for _, want := range []string{"kubelet missing in " + dir, "needs the go command", "minutes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestEnsureRefusesUnknownBinary(t *testing.T) {
	_, err := Ensure(context.Background(), Options{Dir: t.TempDir(), Binaries: []string{"kube-scheduler"}})
	if err == nil || !strings.Contains(err.Error(), `"kube-scheduler"`) {
		t.Fatalf("Ensure(kube-scheduler) = %v, want an error naming it", err)
	}
}

// TestLockWaitsForAnotherBuilder: a second builder of one directory waits
// and says so.
func TestLockWaitsForAnotherBuilder(t *testing.T) {
	dir := t.TempDir()
	unlock, err := lockDir(context.Background(), dir, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	said := make(chan string, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		u, err := lockDir(ctx, dir, func(s string) { said <- s })
		if err == nil {
			u()
		}
		done <- err
	}()
	if s := <-said; !strings.Contains(s, "another build") {
		t.Fatalf("waiting builder said %q", s)
	}
	unlock()
	if err := <-done; err != nil {
		t.Fatalf("second lock after the first was released: %v", err)
	}
}
