package labbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// UpstreamVersion is the containernetworking/plugins release the CNI
// benchmark compares against.
const UpstreamVersion = "v1.10.0"

// upstreamPlugins are the binaries the comparison needs.
var upstreamPlugins = []string{"ptp", "host-local"}

// DefaultUpstreamDir is where the upstream plugins are built and kept:
// <module root>/.cache/bin/cni-plugins-<version> when the working
// directory is inside a Terrane checkout, else the user's cache directory.
func DefaultUpstreamDir(ctx context.Context) (string, error) {
	leaf := "cni-plugins-" + UpstreamVersion
	if out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output(); err == nil {
		gomod := strings.TrimSpace(string(out))
		if b, err := os.ReadFile(gomod); err == nil && bytes.HasPrefix(b, []byte("module github.com/terrane-net/terrane\n")) {
			return filepath.Join(filepath.Dir(gomod), ".cache", "bin", leaf), nil
		}
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no directory for the upstream plugins (%v): give --upstream-bin", err)
	}
	return filepath.Join(dir, "terrane", leaf), nil
}

// missingUpstream lists the plugins dir lacks.
func missingUpstream(dir string) []string {
	var missing []string
	for _, p := range upstreamPlugins {
		if fi, err := os.Stat(filepath.Join(dir, p)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			missing = append(missing, p)
		}
	}
	return missing
}

// EnsureUpstreamPlugins makes sure dir holds ptp and host-local, building
// them with `go install …@UpstreamVersion` (GOBIN=dir) when they are not
// there yet.
func EnsureUpstreamPlugins(ctx context.Context, dir string, progress func(string, ...any)) error {
	missing := missingUpstream(dir)
	if len(missing) == 0 {
		return nil
	}
	if _, err := exec.LookPath("go"); err != nil {
		return fmt.Errorf("%s lacks %s and there is no go command to build them: give --upstream-bin DIR holding ptp and host-local %s", dir, strings.Join(missing, ", "), UpstreamVersion)
	}
	if progress != nil {
		progress("building ptp and host-local %s into %s (once)", UpstreamVersion, dir)
	}
	cmd := exec.CommandContext(ctx, "go", "install",
		"github.com/containernetworking/plugins/plugins/main/ptp@"+UpstreamVersion,
		"github.com/containernetworking/plugins/plugins/ipam/host-local@"+UpstreamVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	cmd.Dir = os.TempDir() // outside any module: the plugins' own go.mod decides
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the upstream plugins: go install: %v: %s", err, bytes.TrimSpace(out))
	}
	if missing := missingUpstream(dir); len(missing) > 0 {
		return errors.New("build the upstream plugins: still missing " + strings.Join(missing, ", ") + " in " + dir)
	}
	return nil
}
