package image

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPrivilegedContainerdImportsAndRuns: a real containerd (its own root,
// state and socket) imports the archive and runs its entrypoint.
func TestPrivilegedContainerdImportsAndRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privileged test: containerd needs root; run `go test` as root")
	}
	for _, tool := range []string{"containerd", "ctr", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("privileged test: needs %s (apt-get install containerd runc)", tool)
		}
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\nimport \"fmt\"\nfunc main() { fmt.Println(\"hello from the terrane image test\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hello")
	build := exec.Command("go", "build", "-o", bin, src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data, err := StaticBinary(bin)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "image.tar")
	var buf bytes.Buffer
	if err := Write(&buf, Options{Tag: "terrane-image-test:1", Entrypoint: []string{"/hello"}, Files: []File{{Path: "/hello", Mode: 0o755, Data: data}}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(archive, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	root := filepath.Join(dir, "containerd")
	sock := filepath.Join(root, "containerd.sock")
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte("version = 2\nroot = \""+root+"/root\"\nstate = \""+root+"/state\"\n[grpc]\n  address = \""+sock+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var log bytes.Buffer
	daemon := exec.CommandContext(ctx, "containerd", "--config", cfg)
	daemon.Stdout, daemon.Stderr = &log, &log
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = daemon.Wait()
		unmountUnder(t, root)
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not start:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctr := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ctr", append([]string{"-a", sock, "-n", "terrane-test"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ctr("images", "import", archive)
	if out := ctr("images", "ls", "-q"); !strings.Contains(out, "terrane-image-test:1") {
		t.Fatalf("imported images:\n%s", out)
	}
	if out := ctr("run", "--rm", "docker.io/library/terrane-image-test:1", "terrane-image-test"); !strings.Contains(out, "hello from the terrane image test") {
		t.Errorf("the image's entrypoint printed:\n%s", out)
	}
}

// unmountUnder unmounts what containerd left mounted below dir.
func unmountUnder(t *testing.T, dir string) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 1 && strings.HasPrefix(fields[1], dir) {
			mounts = append(mounts, fields[1])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if out, err := exec.Command("umount", mounts[i]).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v %s", mounts[i], err, out)
		}
	}
}
