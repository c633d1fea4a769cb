package labbench

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/dataplane/linux"
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
	for _, p := range res.Paths {
		if p.ClientLink.Dev != "eth0" || p.ClientLink.GSOMaxSize == 0 || p.ServerLink.GROMaxSize == 0 {
			t.Errorf("%s: client %+v, server %+v: want eth0's GSO/GRO limits", p.Kind, p.ClientLink, p.ServerLink)
		}
	}
	if res.BigTCP || res.OverlayBigTCP || res.OverlayBigTCPDevices != nil {
		t.Errorf("BIG TCP off, but the result says %v, %v, %+v", res.BigTCP, res.OverlayBigTCP, res.OverlayBigTCPDevices)
	}
	if c, s := pickCPUs(allowedCPUs()); res.Shared.ClientCPU != c || res.Shared.ServerCPU != s {
		t.Errorf("shared CPUs %d and %d, want %d and %d", res.Shared.ClientCPU, res.Shared.ServerCPU, c, s)
	}
	t.Logf("medians: routed %.2f host %.2f vxlan %.2f Gbit/s", res.Paths[0].MedianGbps, res.Paths[1].MedianGbps, res.Paths[2].MedianGbps)
	t.Logf("shared CPU: routed/host %+v, routed/vxlan %+v", res.Shared.RoutedOverHost, res.Shared.RoutedOverVXLAN)
}

// setBigTCP on the kinds of device the overlay has: a veth end, a vxlan
// device and a bridge with both as ports. Whatever the kernel refuses is
// recorded, and what is read back is what the device has.
func TestPrivilegedSetBigTCP(t *testing.T) {
	requireRoot(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	ns := "terrane-bigtcp-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	if err := lab.IPBatch(t.Context(), ns, []string{
		"link add ovx type veth peer name ovy",
		"link add vx0 type vxlan id 42 dstport 4789 local 127.0.0.1 remote 127.0.0.2",
		"link add br0 type bridge",
		"link set ovx master br0 up",
		"link set vx0 master br0 up",
		"link set br0 up",
	}); err != nil {
		t.Fatal(err)
	}
	for _, dev := range []string{"ovy", "ovx", "vx0", "br0"} {
		d, err := setBigTCP(ns, dev, linux.BigTCPSize)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readLinkGSO(ns, dev)
		if err != nil {
			t.Fatal(err)
		}
		if got != d.LinkGSO || d.Netns != ns || d.Dev != dev || d.Requested != linux.BigTCPSize {
			t.Errorf("%s: setBigTCP says %+v, the device has %+v", dev, d, got)
		}
		if d.BigTCPFull() != (len(d.Refused) == 0) {
			t.Errorf("%s: full %v but refused %q", dev, d.BigTCPFull(), d.Refused)
		}
		if strings.HasPrefix(dev, "ov") && !d.BigTCPFull() {
			t.Errorf("%s: a veth takes BIG TCP, got %+v", dev, d)
		}
		t.Logf("%s: %+v", dev, d)
	}
	if _, err := setBigTCP(ns, "nosuchdev", linux.BigTCPSize); err == nil {
		t.Error("setBigTCP on a missing device: no error")
	}
}

// With BigTCP the agents raise the uplinks' and pod veths' limits to what
// the uplink takes, and with OverlayBigTCP the overlay's devices get the
// same: the clients' and servers' eth0 show it.
func TestPrivilegedBenchThroughputBigTCP(t *testing.T) {
	requireRoot(t, "iperf3")
	var major, minor int
	if _, err := fmt.Sscanf(thisMachine().Kernel, "%d.%d", &major, &minor); err != nil || major < 6 || (major == 6 && minor < 3) {
		t.Skipf("IPv4 BIG TCP needs Linux 6.3 or later; this is %s", thisMachine().Kernel)
	}
	o := benchLab(t)
	res, err := RunThroughput(t.Context(), ThroughputOptions{LabOptions: o, Seconds: 1, Rounds: 1, BigTCP: true, OverlayBigTCP: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range checkThroughputResult(res, 1) {
		t.Error(bad)
	}
	if !res.BigTCP || !res.OverlayBigTCP || len(res.OverlayBigTCPDevices) != 8 {
		t.Errorf("big_tcp %v, overlay %v, %d overlay devices (want 8)", res.BigTCP, res.OverlayBigTCP, len(res.OverlayBigTCPDevices))
	}
	want := res.Paths[0].ClientLink.GSOIPv4MaxSize
	if want <= 65536 {
		t.Fatalf("the routed client's eth0 has gso_ipv4_max_size %d: want BIG TCP", want)
	}
	for _, p := range res.Paths {
		if p.ClientLink.GSOIPv4MaxSize != want || p.ServerLink.GROIPv4MaxSize != want {
			t.Errorf("%s: client eth0 gso_ipv4_max_size %d, server eth0 gro_ipv4_max_size %d, want %d", p.Kind,
				p.ClientLink.GSOIPv4MaxSize, p.ServerLink.GROIPv4MaxSize, want)
		}
	}
	t.Logf("notes: %q", res.Notes)
}
