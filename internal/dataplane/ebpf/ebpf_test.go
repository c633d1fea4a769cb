//go:build linux

package ebpf

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/terrane-net/terrane/internal/dataplane/nft"
	"github.com/terrane-net/terrane/internal/policy"
	"github.com/terrane-net/terrane/internal/testnet"
)

func TestProgramsAssemble(t *testing.T) {
	for name, p := range map[string]interface{ String() string }{
		"uplink": uplinkProgram(3), "veth": vethProgram(3, 4, 2),
	} {
		if !strings.Contains(p.String(), "pass:") {
			t.Errorf("%s program has no pass label:\n%s", name, p)
		}
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to create network namespaces and load BPF programs")
	}
	for _, c := range []string{"ip", "ping", "iperf3"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("privileged test: needs %s", c)
		}
	}
}

// in runs fn on a thread switched to network namespace ns.
func in(t *testing.T, ns string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Errorf("open netns %s: %v", ns, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			t.Errorf("setns %s: %v", ns, err)
			return
		}
		fn()
	}()
	<-done
}

type testHost struct {
	ns, pod      string
	uplink, veth string
	podIP        netip.Addr
	peerIP       string
}

// linkInfo reads an interface's index and MAC in namespace ns.
func linkInfo(t *testing.T, ns, dev string) (int, net.HardwareAddr) {
	t.Helper()
	idx, err := strconv.Atoi(strings.TrimSpace(testnet.Run(t, "ip", "netns", "exec", ns, "cat", "/sys/class/net/"+dev+"/ifindex")))
	if err != nil {
		t.Fatal(err)
	}
	mac, err := net.ParseMAC(strings.TrimSpace(testnet.Run(t, "ip", "netns", "exec", ns, "cat", "/sys/class/net/"+dev+"/address")))
	if err != nil {
		t.Fatal(err)
	}
	return idx, mac
}

// forwarded is Ip: ForwDatagrams of namespace ns.
func forwarded(t *testing.T, ns string) int {
	t.Helper()
	lines := strings.Split(testnet.Run(t, "ip", "netns", "exec", ns, "cat", "/proc/net/snmp"), "\n")
	for i := 0; i+1 < len(lines); i++ {
		if strings.HasPrefix(lines[i], "Ip: ") && strings.HasPrefix(lines[i+1], "Ip: ") {
			keys, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			for j, k := range keys {
				if k == "ForwDatagrams" {
					n, err := strconv.Atoi(vals[j])
					if err != nil {
						t.Fatal(err)
					}
					return n
				}
			}
		}
	}
	t.Fatal("no Ip: ForwDatagrams in /proc/net/snmp")
	return 0
}

// reach pings b's pod from a's and runs a one-second TCP transfer.
func reach(t *testing.T, a, b *testHost) {
	t.Helper()
	testnet.Run(t, "ip", "netns", "exec", a.pod, "ping", "-c", "20", "-i", "0.01", "-W", "1", "-q", b.podIP.String())
	srv := exec.Command("ip", "netns", "exec", b.pod, "iperf3", "-s", "-1", "-p", "5301")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	var err error
	for range 50 {
		var out []byte
		out, err = exec.Command("ip", "netns", "exec", a.pod, "iperf3", "-c", b.podIP.String(), "-p", "5301", "-t", "1").CombinedOutput()
		if err == nil {
			return
		}
		err = fmt.Errorf("%v: %s", err, out)
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("TCP %s → %s: %v", a.podIP, b.podIP, err)
}

// TestPrivilegedEBPFFastPath builds two hosts on one link, one pod each,
// routed as the agent routes them (pod /32 on its veth, proxy-ARP gateway,
// the peer's pod via the peer), then checks the pods reach each other
// with the fast path on (with the hosts' IP forwarding counters flat) and
// again after it is closed (through the routes).
func TestPrivilegedEBPFFastPath(t *testing.T) {
	requireRoot(t)
	hosts := []*testHost{
		{ns: testnet.NewNS(t, "h1"), pod: testnet.NewNS(t, "p1"), podIP: netip.MustParseAddr("10.77.0.1"), peerIP: "192.168.77.2"},
		{ns: testnet.NewNS(t, "h2"), pod: testnet.NewNS(t, "p2"), podIP: netip.MustParseAddr("10.77.0.65"), peerIP: "192.168.77.1"},
	}
	h1, h2 := hosts[0], hosts[1]
	testnet.Run(t, "ip", "-n", h1.ns, "link", "add", "up0", "type", "veth", "peer", "up0", "netns", h2.ns)
	for i, h := range hosts {
		h.uplink, h.veth = "up0", "trnpod"
		testnet.Run(t, "ip", "-n", h.ns, "addr", "add", fmt.Sprintf("192.168.77.%d/24", i+1), "dev", "up0")
		testnet.Run(t, "ip", "-n", h.ns, "link", "set", "up0", "up")
		testnet.Run(t, "ip", "-n", h.ns, "link", "add", h.veth, "type", "veth", "peer", "eth0", "netns", h.pod)
		testnet.Run(t, "ip", "-n", h.ns, "link", "set", h.veth, "up")
		for _, kv := range []string{"net.ipv4.conf.all.forwarding=1", "net.ipv4.conf." + h.veth + ".proxy_arp=1",
			"net.ipv4.neigh." + h.veth + ".proxy_delay=0", "net.ipv4.conf." + h.veth + ".rp_filter=1"} {
			testnet.Run(t, "ip", "netns", "exec", h.ns, "sysctl", "-q", "-w", kv)
		}
		testnet.Run(t, "ip", "-n", h.ns, "route", "add", h.podIP.String()+"/32", "dev", h.veth, "scope", "link", "table", "250")
		testnet.Run(t, "ip", "-n", h.ns, "route", "add", "169.254.1.1/32", "dev", "lo", "scope", "link", "table", "250")
		testnet.Run(t, "ip", "-n", h.ns, "rule", "add", "priority", "100", "lookup", "250")
		testnet.Run(t, "ip", "-n", h.pod, "addr", "add", h.podIP.String()+"/32", "dev", "eth0")
		testnet.Run(t, "ip", "-n", h.pod, "link", "set", "eth0", "up")
		testnet.Run(t, "ip", "-n", h.pod, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
		testnet.Run(t, "ip", "-n", h.pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
	}
	testnet.Run(t, "ip", "-n", h1.ns, "route", "add", "10.77.0.64/26", "via", h1.peerIP, "table", "250")
	testnet.Run(t, "ip", "-n", h2.ns, "route", "add", "10.77.0.0/26", "via", h2.peerIP, "table", "250")

	// Through the routes: the hosts forward.
	f1, f2 := forwarded(t, h1.ns), forwarded(t, h2.ns)
	reach(t, h1, h2)
	if d1, d2 := forwarded(t, h1.ns)-f1, forwarded(t, h2.ns)-f2; d1 < 20 || d2 < 20 {
		t.Fatalf("without the fast path the hosts forwarded %d and %d datagrams; want at least 20 each", d1, d2)
	}

	fps := make([]*FastPath, 2)
	for i, h := range hosts {
		up, _ := linkInfo(t, h.ns, h.uplink)
		vidx, vmac := linkInfo(t, h.ns, h.veth)
		_, pmac := linkInfo(t, h.pod, "eth0")
		in(t, h.ns, func() {
			fp, err := Open(up)
			if err != nil {
				t.Errorf("open on %s: %v", h.ns, err)
				return
			}
			fps[i] = fp
			if err := fp.AddPod(h.podIP, vidx, pmac, vmac); err != nil {
				t.Error(err)
			}
			if err := fp.SetNetworks([]netip.Prefix{netip.MustParsePrefix("10.77.0.0/16")}); err != nil {
				t.Error(err)
			}
		})
		if t.Failed() {
			t.FailNow()
		}
		t.Cleanup(func() { _ = fps[i].Close() })
	}
	f1, f2 = forwarded(t, h1.ns), forwarded(t, h2.ns)
	reach(t, h1, h2)
	reach(t, h2, h1)
	if d1, d2 := forwarded(t, h1.ns)-f1, forwarded(t, h2.ns)-f2; d1 != 0 || d2 != 0 {
		t.Errorf("with the fast path the hosts' stacks forwarded %d and %d datagrams; want 0 (the programs carry them)", d1, d2)
	}

	// A pod removed from the map goes through the routes again.
	if err := fps[1].DelPod(h2.podIP); err != nil {
		t.Fatal(err)
	}
	f2 = forwarded(t, h2.ns)
	reach(t, h1, h2)
	if d2 := forwarded(t, h2.ns) - f2; d2 < 20 {
		t.Errorf("after DelPod host 2 forwarded %d datagrams; want at least 20", d2)
	}

	// Back in, then detached under traffic: the routes take over with no
	// packet lost.
	vidx, vmac := linkInfo(t, h2.ns, h2.veth)
	_, pmac := linkInfo(t, h2.pod, "eth0")
	in(t, h2.ns, func() {
		if err := fps[1].AddPod(h2.podIP, vidx, pmac, vmac); err != nil {
			t.Error(err)
		}
	})
	f2 = forwarded(t, h2.ns)
	reach(t, h1, h2)
	if d2 := forwarded(t, h2.ns) - f2; d2 != 0 {
		t.Errorf("pod added again: host 2 forwarded %d datagrams; want 0", d2)
	}
	standAside(t, fps, h1, h2)

	ping := exec.Command("ip", "netns", "exec", h1.pod, "ping", "-c", "200", "-i", "0.01", "-W", "1", "-q", h2.podIP.String())
	var out strings.Builder
	ping.Stdout, ping.Stderr = &out, &out
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	for _, fp := range fps {
		if err := fp.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := ping.Wait(); err != nil || !strings.Contains(out.String(), " 0% packet loss") {
		t.Fatalf("ping across the detach: %v: %s", err, out.String())
	}
	f1 = forwarded(t, h1.ns)
	reach(t, h1, h2)
	if d1 := forwarded(t, h1.ns) - f1; d1 < 20 {
		t.Errorf("after Close host 1 forwarded %d datagrams; want at least 20", d1)
	}
}

// pings reports whether three pings from a's pod to b's get an answer.
func pings(a, b *testHost) bool {
	return exec.Command("ip", "netns", "exec", a.pod, "ping", "-c", "3", "-i", "0.05", "-W", "1", "-q", b.podIP.String()).Run() == nil
}

// standAside: the fast path bypasses nftables' forward hook (the negative
// control: a table denying host 2's pod everything does not stop the
// fast-pathed packets), and a pod stood aside is reached through the
// stack, where the same table stops them; with the table gone it is
// reached through the stack again, and AddPod puts it back on the fast
// path.
func standAside(t *testing.T, fps []*FastPath, h1, h2 *testHost) {
	t.Helper()
	h, err := netns.GetFromName(h2.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	tbl, err := nft.Open(int(h))
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	c := &policy.Cluster{
		Pods:     []policy.Pod{{Namespace: "x", Name: "b", Node: "h2", IPs: []netip.Addr{h2.podIP}}},
		Policies: []policy.NetworkPolicy{{Metadata: policy.ObjectMeta{Name: "deny", Namespace: "x"}}},
	}
	rs, err := policy.Compile(c, policy.Node{Name: "h2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl.Apply(rs); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tbl.Remove() }()
	if !pings(h1, h2) {
		t.Fatal("negative control: the fast path should carry packets past the denying table, and did not")
	}
	if err := fps[1].StandAside(h2.podIP); err != nil {
		t.Fatal(err)
	}
	if pings(h1, h2) {
		t.Error("host 2's pod stood aside: the denying table should stop the pings, and did not")
	}
	if err := fps[0].StandAside(h1.podIP); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Apply(&policy.RuleSet{Node: "h2"}); err != nil {
		t.Fatal(err)
	}
	f1, f2 := forwarded(t, h1.ns), forwarded(t, h2.ns)
	reach(t, h1, h2)
	if d1, d2 := forwarded(t, h1.ns)-f1, forwarded(t, h2.ns)-f2; d1 < 20 || d2 < 20 {
		t.Errorf("stood aside, both hosts' stacks should forward; they forwarded %d and %d datagrams", d1, d2)
	}
	for i, h := range []*testHost{h1, h2} {
		vidx, vmac := linkInfo(t, h.ns, h.veth)
		_, pmac := linkInfo(t, h.pod, "eth0")
		in(t, h.ns, func() {
			if err := fps[i].AddPod(h.podIP, vidx, pmac, vmac); err != nil {
				t.Error(err)
			}
		})
	}
	f1, f2 = forwarded(t, h1.ns), forwarded(t, h2.ns)
	reach(t, h1, h2)
	if d1, d2 := forwarded(t, h1.ns)-f1, forwarded(t, h2.ns)-f2; d1 != 0 || d2 != 0 {
		t.Errorf("back on the fast path the hosts forwarded %d and %d datagrams; want 0", d1, d2)
	}
}
