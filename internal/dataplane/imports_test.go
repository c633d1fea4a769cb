package dataplane

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestImports keeps the State/Plan core and the fake free of netlink (only
// internal/dataplane/linux may import it) and the core free of I/O, clock and
// logging, like the other pure packages.
func TestImports(t *testing.T) {
	const mod = "github.com/terrane-net/terrane/internal/dataplane"
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not in PATH")
	}
	for _, pkg := range []string{mod, mod + "/fake"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v: %s", pkg, err, out)
		}
		for dep := range strings.Lines(string(out)) {
			if strings.HasPrefix(dep, "github.com/vishvananda/") {
				t.Errorf("%s depends on %s; only %s/linux may", pkg, strings.TrimSpace(dep), mod)
			}
		}
	}
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, mod).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s: %v: %s", mod, err, out)
	}
	imports := strings.Fields(string(out))
	for _, banned := range []string{"os", "net/http", "log", "log/slog", "time"} {
		if slices.Contains(imports, banned) {
			t.Errorf("%s imports %s; the core does no I/O, clock or logging", mod, banned)
		}
	}
}
