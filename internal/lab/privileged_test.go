package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/ipam"
)

// requireRoot skips a TestPrivileged* test that cannot build namespaces.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to create network namespaces; run `go test` as root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("privileged test: needs the ip command from iproute2")
	}
}

// testLab is a lab name unique to this test run, removed (namespaces,
// processes, directory) when the test ends, whatever happened.
func testLab(t testing.TB) Names {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	n := Names{Lab: "t" + hex.EncodeToString(b[:]), Dir: t.TempDir()}
	t.Cleanup(func() {
		rep, err := Down(context.Background(), DownOptions{Name: n.Lab, Dir: n.Dir})
		if err != nil {
			t.Errorf("cleanup: lab down %s: %v (report %+v)", n.Lab, err, rep)
		}
		if left := labNetns(n.Prefix()); len(left) > 0 {
			t.Errorf("cleanup: namespaces left: %v", left)
		}
	})
	return n
}

func shipped(t testing.TB, name string) *Scenario {
	t.Helper()
	sc, _, err := LoadScenario(name)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func hostTargets(st *State) []ProbeTarget {
	var out []ProbeTarget
	for _, h := range st.Scenario.Hosts {
		out = append(out, ProbeTarget{Name: h.Name, Netns: st.names().Node(h.Name), Addr: h.IP})
	}
	return out
}

func requireAllReached(t *testing.T, rep *ProbeReport) {
	t.Helper()
	want := 0 // one result per ordered pair and family both have
	for _, from := range rep.Pods {
		for _, to := range rep.Pods {
			for _, fam := range []int{4, 6} {
				_, ok1 := from.addrOf(fam)
				_, ok2 := to.addrOf(fam)
				if from.Name != to.Name && ok1 && ok2 {
					want++
				}
			}
		}
	}
	if len(rep.Results) != want {
		t.Errorf("%d probe results, want %d", len(rep.Results), want)
	}
	if rep.Failed() > 0 {
		t.Errorf("reachability:\n%s", rep.Matrix())
	}
}

// The fabric of two racks: namespaces, bridges, addresses and routes
// exist; hosts reach each other inside a rack and across the routers; the
// routers carry each other's segments; down leaves nothing.
func TestPrivilegedLabInfrastructure(t *testing.T) {
	requireRoot(t)
	n := testLab(t)
	sc := shipped(t, "two-racks")
	ctx := t.Context()
	m := &countingMeter{}
	st, err := Up(ctx, UpOptions{Name: n.Lab, Dir: n.Dir, Scenario: sc, InfraOnly: true, Progress: t.Logf, Meter: m})
	if err != nil {
		t.Fatal(err)
	}
	m.check(t)

	want := []string{n.Fabric(), n.Node("tor-1"), n.Node("tor-2"), n.Node("r1-host-1"), n.Node("r1-host-2"), n.Node("r2-host-1"), n.Node("r2-host-2")}
	got := labNetns(n.Prefix())
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("namespaces %v, want %v", got, want)
	}
	links := mustRun(t, "ip", "-n", n.Fabric(), "-br", "link")
	for _, l := range []string{"br0", "br1", "spine", "h0", "h3", "r0s0", "r1s1", "r0", "r1"} {
		if !strings.Contains(links, l+" ") && !strings.Contains(links, l+"@") {
			t.Errorf("fabric has no link %s:\n%s", l, links)
		}
	}
	if addr := mustRun(t, "ip", "-n", n.Node("r2-host-1"), "-br", "addr", "show", "eth0"); !strings.Contains(addr, "192.168.2.11/24") {
		t.Errorf("r2-host-1 eth0: %s", addr)
	}
	if addr := mustRun(t, "ip", "-n", n.Node("tor-1"), "-br", "addr"); !strings.Contains(addr, "192.168.1.1/24") || !strings.Contains(addr, "172.31.255.1/24") {
		t.Errorf("tor-1 addresses: %s", addr)
	}
	nr, err := ReadRoutes(ctx, "tor-1", "router", n.Node("tor-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(nr.Routes, func(r KernelRoute) bool {
		return r.Table == "100" && r.Dst == "192.168.2.0/24" && r.Gateway == "172.31.255.2"
	}) {
		t.Errorf("tor-1 has no underlay route to rack-2 via tor-2:\n%s", nr.Text())
	}
	if !slices.ContainsFunc(nr.Rules, func(r Rule) bool { return r.Priority == RouterRulePref && r.Table == "100" }) {
		t.Errorf("tor-1 has no rule for table 100:\n%s", nr.Text())
	}
	host, err := ReadRoutes(ctx, "r1-host-1", "host", n.Node("r1-host-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(host.Routes, func(r KernelRoute) bool { return r.Dst == "default" && r.Gateway == "192.168.1.1" }) {
		t.Errorf("r1-host-1 has no default route via tor-1:\n%s", host.Text())
	}

	// Every host reaches every host: inside a rack over the bridge, across
	// racks through both routers.
	rep, err := Probe(ctx, hostTargets(st))
	if err != nil {
		t.Fatal(err)
	}
	requireAllReached(t, rep)

	// Routers answer too (the host's gateway and the far router's spine
	// address).
	rep, err = Probe(ctx, []ProbeTarget{
		{Name: "r1-host-1", Netns: n.Node("r1-host-1"), Addr: netip.MustParseAddr("192.168.1.11")},
		{Name: "tor-2", Netns: n.Node("tor-2"), Addr: netip.MustParseAddr("172.31.255.2")},
	})
	if err != nil {
		t.Fatal(err)
	}
	requireAllReached(t, rep)

	// Up refuses to run over the lab.
	if _, err := Up(ctx, UpOptions{Name: n.Lab, Dir: n.Dir, Scenario: sc, InfraOnly: true}); err == nil || !strings.Contains(err.Error(), "terrane lab down --name "+n.Lab) {
		t.Errorf("second up: %v, want an error telling to run lab down", err)
	}

	if _, err := Down(ctx, DownOptions{Name: n.Lab, Dir: n.Dir}); err != nil {
		t.Fatal(err)
	}
	if left := labNetns(n.Prefix()); len(left) > 0 {
		t.Errorf("after down: namespaces %v", left)
	}
	if _, err := os.Stat(n.Dir); !os.IsNotExist(err) {
		t.Errorf("after down: lab directory: %v", err)
	}
	rep2, err := Down(ctx, DownOptions{Name: n.Lab, Dir: n.Dir})
	if err != nil || !rep2.Empty() {
		t.Errorf("second down: %+v, %v; want nothing to do", rep2, err)
	}
}

// wirePod connects a pod namespace to its host by hand, as the CNI plugin
// would: a veth, the pod's /32, a link-local gateway on the host side, a
// /32 route on the host.
func wirePod(t *testing.T, n Names, host, pod string, addr netip.Addr) ProbeTarget {
	t.Helper()
	ns := n.Pod(pod)
	mustRun(t, "ip", "netns", "add", ns)
	veth := "v-" + pod
	mustRun(t, "ip", "-n", n.Node(host), "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
	if err := ipBatch(t.Context(), ns, []string{
		"link set lo up", "link set eth0 up",
		"addr add " + addr.String() + "/32 dev eth0",
		"route add 169.254.1.1 dev eth0 scope link",
		"route add default via 169.254.1.1 dev eth0",
	}); err != nil {
		t.Fatal(err)
	}
	if err := ipBatch(t.Context(), n.Node(host), []string{
		"link set " + veth + " up",
		"addr add 169.254.1.1/32 dev " + veth,
		"route add " + addr.String() + "/32 dev " + veth,
	}); err != nil {
		t.Fatal(err)
	}
	if err := setSysctls(n.Node(host), [][2]string{{"ipv4.ip_forward", "1"}}); err != nil {
		t.Fatal(err)
	}
	return ProbeTarget{Name: pod, Host: host, Netns: ns, Addr: addr}
}

// Pods wired by hand behind two racks reach each other through the
// routers' computed routes: each rack's group prefix via one of its hosts,
// which forwards to its L2 peer.
func TestPrivilegedLabRouterRoutes(t *testing.T) {
	requireRoot(t)
	n := testLab(t)
	sc := shipped(t, "two-racks")
	topo, err := sc.Compile()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	st, err := Up(ctx, UpOptions{Name: n.Lab, Dir: n.Dir, Scenario: sc, InfraOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]netip.Prefix{
		"r1-host-1": netip.MustParsePrefix("10.20.0.0/28"), "r1-host-2": netip.MustParsePrefix("10.20.0.16/28"),
		"r2-host-1": netip.MustParsePrefix("10.20.128.0/28"), "r2-host-2": netip.MustParsePrefix("10.20.128.16/28"),
	}
	fs := FabricState{
		Groups: map[string]map[string][]netip.Prefix{"racks": {
			"rack-1": {netip.MustParsePrefix("10.20.0.0/17")}, "rack-2": {netip.MustParsePrefix("10.20.128.0/17")},
		}},
		Blocks: map[string][]ipam.BlockInfo{},
	}
	var targets []ProbeTarget
	for _, h := range sc.Hosts {
		group := "rack-" + h.Labels["rack"]
		fs.Hosts = append(fs.Hosts, ipam.HostInfo{Name: h.Name, IP: h.IP, Labels: h.Labels, Groups: map[string]string{"racks": group}})
		fs.Blocks["racks"] = append(fs.Blocks["racks"], ipam.BlockInfo{Prefix: blocks[h.Name], Host: h.Name, Group: group, Used: 1})
		targets = append(targets, wirePod(t, n, h.Name, "p-"+h.Name, blocks[h.Name].Addr().Next()))
		st.Netns = append(st.Netns, n.Pod("p-"+h.Name))
	}
	// The agents' L2 peer routes: each host reaches its rack peer's block.
	for _, h := range sc.Hosts {
		for _, p := range sc.Hosts {
			if p.Name != h.Name && p.Segment == h.Segment {
				mustRun(t, "ip", "-n", n.Node(h.Name), "route", "add", blocks[p.Name].String(), "via", p.IP.String())
			}
		}
	}
	want := RouterRoutes(sc, topo, fs)
	diffs, err := applyRoutes(ctx, st, want, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs["tor-1"].Added) != 2 {
		t.Errorf("tor-1: added %v, want the two rack prefixes", diffs["tor-1"].Added)
	}
	nr, err := ReadRoutes(ctx, "tor-1", "router", n.Node("tor-1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []KernelRoute{{Dst: "10.20.0.0/17", Gateway: "192.168.1.11"}, {Dst: "10.20.128.0/17", Gateway: "172.31.255.2"}} {
		if !slices.ContainsFunc(nr.Routes, func(k KernelRoute) bool { return k.Table == "100" && k.Dst == r.Dst && k.Gateway == r.Gateway }) {
			t.Errorf("tor-1 lacks %s via %s:\n%s", r.Dst, r.Gateway, nr.Text())
		}
	}
	rep, err := Probe(ctx, targets)
	if err != nil {
		t.Fatal(err)
	}
	requireAllReached(t, rep)

	// Applying the same state again changes nothing.
	diffs, err = applyRoutes(ctx, st, want, nil)
	if err != nil {
		t.Fatal(err)
	}
	for r, d := range diffs {
		if !d.Empty() {
			t.Errorf("router %s: second apply changed %s", r, d)
		}
	}
	// A probe that must fail does: a pod address nobody routes.
	rep, err = Probe(ctx, append(targets[:1:1], ProbeTarget{Name: "nowhere", Netns: targets[1].Netns, Addr: netip.MustParseAddr("10.20.64.1")}))
	if err == nil && rep.Failed() == 0 {
		t.Error("a probe to an address that is routed nowhere succeeded")
	}
}

// Down after a crash: with state.json gone and a process nobody recorded
// running inside a host namespace, down still stops it and removes every
// namespace and the directory.
func TestPrivilegedLabDownAfterCrash(t *testing.T) {
	requireRoot(t)
	n := testLab(t)
	sc := shipped(t, "flat-l2")
	ctx := t.Context()
	if _, err := Up(ctx, UpOptions{Name: n.Lab, Dir: n.Dir, Scenario: sc, InfraOnly: true}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", n.Node("host-2"), "sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	// Wait until ip has entered the namespace and exec'd sleep.
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(processesIn([]string{n.Node("host-2")}), cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatal("the stray process never entered host-2's namespace")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.Remove(n.State()); err != nil {
		t.Fatal(err)
	}
	rep, err := Down(ctx, DownOptions{Name: n.Lab, Dir: n.Dir})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rep.Killed, cmd.Process.Pid) {
		t.Errorf("down killed %v, not the stray process %d", rep.Killed, cmd.Process.Pid)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Error("the stray process still runs 10 s after down")
	}
	if left := labNetns(n.Prefix()); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
	if len(rep.Netns) != 4 {
		t.Errorf("down removed namespaces %v, want the fabric and the 3 hosts", rep.Netns)
	}
}
