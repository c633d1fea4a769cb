// Package testnet holds what privileged tests need to make network
// namespaces and run commands in them: one copy instead of one per package.
package testnet

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Run runs a command and returns its combined output, failing the test on
// an error.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// NewNS makes a fresh network namespace terrane-test-ROLE-HEX with lo up
// and returns its name (its path is /run/netns/NAME). It is deleted when
// the test ends, even on failure, unless the test deleted it itself.
func NewNS(t testing.TB, role string) string {
	t.Helper()
	var b [3]byte
	_, _ = rand.Read(b[:])
	name := fmt.Sprintf("terrane-test-%s-%s", role, hex.EncodeToString(b[:]))
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if _, err := os.Stat("/run/netns/" + name); err != nil {
			return // the test deleted it
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("cleanup: ip netns del %s: %v: %s", name, err, out)
		}
	})
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}
