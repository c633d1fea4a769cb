package kubenode

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/terrane-net/terrane/internal/image"
)

// labpodSource is the program of both lab images (labpod/main.go), built
// static with nothing but the Go toolchain.
//
//go:embed labpod/main.go
var labpodSource []byte

// Image tags of the lab's images, as a pod spec names them. containerd
// stores them as docker.io/<tag>, and so does the CRI when a pod names
// them short.
const (
	PauseImage = "terrane-lab/pause:1"
	PodImage   = "terrane-lab/pod:1"
)

// PodPort is the TCP port the pod image's workload serves its hostname on
// (not the lab's probe port, which the probes bind in the pod themselves).
const PodPort = 8080

// CNIPluginsVersion is the release of the upstream CNI plugins whose
// loopback plugin containerd's CRI runs for every sandbox's lo.
const CNIPluginsVersion = "v1.10.0"

// DefaultCacheDir holds what Tools builds, outside any checkout.
const DefaultCacheDir = "/var/cache/terrane/lab"

// Tools are the files a node needs besides containerd, runc and the
// kubelet: the images' archives and the CNI loopback plugin.
type Tools struct {
	// PauseArchive and PodArchive are docker-save archives of PauseImage
	// and PodImage.
	PauseArchive, PodArchive string
	// Loopback is the upstream CNI loopback plugin.
	Loopback string
}

// BuildTools builds (once; later calls find them in cacheDir) the lab's
// images from labpod's embedded source and installs the CNI loopback
// plugin, both with the Go toolchain (`go`, or /usr/local/go/bin/go). The
// image directory is keyed by the source's hash, the plugin's by version.
func BuildTools(ctx context.Context, cacheDir string) (Tools, error) {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir
	}
	sum := sha256.Sum256(labpodSource)
	imgDir := filepath.Join(cacheDir, "images-"+hex.EncodeToString(sum[:6]))
	pluginDir := filepath.Join(cacheDir, "cni-plugins-"+CNIPluginsVersion)
	t := Tools{
		PauseArchive: filepath.Join(imgDir, "pause.tar"),
		PodArchive:   filepath.Join(imgDir, "pod.tar"),
		Loopback:     filepath.Join(pluginDir, "loopback"),
	}
	if exists(t.PauseArchive) && exists(t.PodArchive) && exists(t.Loopback) {
		return t, nil
	}
	// One builder at a time (two labs, two test packages).
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return t, err
	}
	lock, err := os.OpenFile(filepath.Join(cacheDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return t, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return t, err
	}
	goBin, err := goTool()
	if err != nil {
		return t, err
	}
	if !exists(t.PauseArchive) || !exists(t.PodArchive) {
		if err := buildImages(ctx, goBin, imgDir, t); err != nil {
			return t, err
		}
	}
	if !exists(t.Loopback) {
		if err := os.MkdirAll(pluginDir, 0o755); err != nil {
			return t, err
		}
		pkg := "github.com/containernetworking/plugins/plugins/main/loopback@" + CNIPluginsVersion
		cmd := exec.CommandContext(ctx, goBin, "install", "-trimpath", pkg)
		cmd.Dir = pluginDir
		cmd.Env = append(os.Environ(), "GOBIN="+pluginDir, "CGO_ENABLED=0", "GOFLAGS=", "GO111MODULE=on")
		if out, err := cmd.CombinedOutput(); err != nil {
			return t, fmt.Errorf("go install %s (the CNI loopback plugin containerd runs for every pod's lo): %v\n%s", pkg, err, out)
		}
	}
	return t, nil
}

// buildImages compiles labpod static and writes both archives.
func buildImages(ctx context.Context, goBin, dir string, t Tools) error {
	work, err := os.MkdirTemp("", "terrane-labpod-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	files := map[string][]byte{
		"go.mod":  []byte("module terrane.local/labpod\n\ngo 1.22\n"),
		"main.go": labpodSource,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(work, name), data, 0o644); err != nil {
			return err
		}
	}
	bin := filepath.Join(work, "labpod")
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the lab's pod image binary: %v\n%s", err, out)
	}
	data, err := image.StaticBinary(bin)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, img := range []struct {
		path, tag  string
		entrypoint []string
	}{
		{t.PauseArchive, PauseImage, []string{"/labpod"}},
		{t.PodArchive, PodImage, []string{"/labpod", "serve", fmt.Sprintf(":%d", PodPort)}},
	} {
		var buf bytes.Buffer
		err := image.Write(&buf, image.Options{Tag: img.tag, Entrypoint: img.entrypoint,
			Files: []image.File{{Path: "/labpod", Mode: 0o755, Data: data}}})
		if err != nil {
			return err
		}
		if err := writeAtomic(img.path, buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// goTool finds the Go toolchain.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if p := "/usr/local/go/bin/go"; exists(p) {
		return p, nil
	}
	return "", errors.New("the Go toolchain is needed once to build the lab's pod images and the CNI loopback plugin: put `go` on PATH (https://go.dev/dl/)")
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// writeAtomic writes a file whole or not at all (a temporary file of its
// own, renamed).
func writeAtomic(p string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp, mode)); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
