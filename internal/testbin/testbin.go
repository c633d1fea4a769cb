// Package testbin builds the project's binaries, and installs the upstream
// tools tests drive them with, once per test binary run. Tests that run
// real processes (labs, cnitool, benchmarks) share it instead of each
// carrying a copy; wrap TestMain with Main so the builds are removed.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	mu     sync.Mutex
	dir    string // this run's builds
	built  = map[string]error{}
	rootMu sync.Once
	root   string
	rootEr error
)

// Main runs the tests and removes what was built.
func Main(m *testing.M) {
	code := m.Run()
	mu.Lock()
	if dir != "" {
		os.RemoveAll(dir)
	}
	mu.Unlock()
	os.Exit(code)
}

// Root is the repository's root (the directory of go.mod).
func Root(tb testing.TB) string {
	tb.Helper()
	rootMu.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			rootEr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root = filepath.Dir(strings.TrimSpace(string(out)))
	})
	if rootEr != nil {
		tb.Fatal(rootEr)
	}
	return root
}

// Terrane builds cmd/terrane and cmd/terrane-cni into one directory (the
// lab finds the plugin next to terrane; as a CNI_PATH it holds the plugin)
// and returns it.
func Terrane(tb testing.TB) string {
	tb.Helper()
	r := Root(tb)
	mu.Lock()
	defer mu.Unlock()
	if dir == "" {
		d, err := os.MkdirTemp("", "terrane-testbin-")
		if err != nil {
			tb.Fatal(err)
		}
		dir = d
	}
	const key = "terrane"
	err, done := built[key]
	if !done {
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/terrane", "./cmd/terrane-cni")
		cmd.Dir = r
		if out, berr := cmd.CombinedOutput(); berr != nil {
			err = fmt.Errorf("go build ./cmd/terrane ./cmd/terrane-cni: %v: %s", berr, out)
		}
		built[key] = err
	}
	if err != nil {
		tb.Fatal(err)
	}
	return dir
}

// Tool installs an upstream Go command (pkg is its import path, version a
// module version) into the repository's git-ignored .cache/bin/<name>-<version>
// and returns the directory; installed once, reused by later runs.
func Tool(tb testing.TB, name, pkg, version string) string {
	tb.Helper()
	bin := filepath.Join(Root(tb), ".cache", "bin", name+"-"+version)
	mu.Lock()
	defer mu.Unlock()
	key := pkg + "@" + version
	err, done := built[key]
	if !done {
		if _, serr := os.Stat(filepath.Join(bin, filepath.Base(pkg))); serr != nil {
			cmd := exec.Command("go", "install", key)
			cmd.Dir = Root(tb)
			cmd.Env = append(os.Environ(), "GOBIN="+bin)
			if out, ierr := cmd.CombinedOutput(); ierr != nil {
				err = fmt.Errorf("go install %s: %v: %s", key, ierr, out)
			}
		}
		built[key] = err
	}
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}
