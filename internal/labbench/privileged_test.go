package labbench

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/lab"
	"github.com/terrane-net/terrane/internal/testbin"
)

// TestMain removes the binaries the privileged tests built.
func TestMain(m *testing.M) { testbin.Main(m) }

// requireRoot skips a TestPrivileged* test that cannot build a lab.
func requireRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to build a lab (network namespaces, veth pairs); run `go test` as root")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("privileged test: needs the %s command (apt-get install iproute2 %s)", tool, strings.Join(tools, " "))
		}
	}
}

// benchLab is a lab unique to this test; the test fails if the benchmark
// leaves any of its namespaces behind (it removes its lab itself).
func benchLab(t *testing.T) LabOptions {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	o := LabOptions{Name: "b" + hex.EncodeToString(b[:]), Dir: t.TempDir(), Terrane: filepath.Join(testbin.Terrane(t), "terrane"), Progress: t.Logf}
	prefix := o.names().Prefix()
	t.Cleanup(func() {
		out, _ := exec.Command("ip", "netns", "list").Output()
		if strings.Contains(string(out), prefix) {
			t.Errorf("the benchmark left namespaces %s*:\n%s", prefix, out)
			_, _ = lab.Down(t.Context(), lab.DownOptions{Name: o.Name, Dir: o.Dir})
		}
	})
	return o
}

func TestPrivilegedBenchCNISmoke(t *testing.T) {
	requireRoot(t, "go")
	o := benchLab(t)
	up, err := DefaultUpstreamDir(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureUpstreamPlugins(t.Context(), up, t.Logf); err != nil {
		t.Fatal(err)
	}
	conc := []int{1, 5}
	res, err := RunCNI(t.Context(), CNIOptions{LabOptions: o, UpstreamBin: up, N: 10, Concurrency: conc})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range checkCNIResult(res, 10, conc) {
		t.Error(bad)
	}
	if res.Machine.Cores < 1 || res.Machine.Kernel == "" {
		t.Errorf("machine %+v", res.Machine)
	}
	t.Logf("result: %+v", res.Runs)
}

func TestPrivilegedBenchThroughputSmoke(t *testing.T) {
	requireRoot(t, "iperf3")
	o := benchLab(t)
	res, err := RunThroughput(t.Context(), ThroughputOptions{LabOptions: o, Seconds: 1, Rounds: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range checkThroughputResult(res, 2) {
		t.Error(bad)
	}
	t.Logf("medians: routed %.2f host %.2f vxlan %.2f Gbit/s", res.Paths[0].MedianGbps, res.Paths[1].MedianGbps, res.Paths[2].MedianGbps)
}
