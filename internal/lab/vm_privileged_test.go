package lab

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/testbin"
)

// VM ports beside pods on the default lab: eight VMs plugged into one host
// through the API, and more pods on it through libcni. Every VM has its
// own address, no address is held twice across pods (addresses the
// agent gave, from the lab state) and VMs (addresses the server gave, from
// the API), and every pod and VM reaches every other by TCP and ICMP.
// The server's blocks for VM ports are its own, so no address is shared;
// the server counts every address in use on the host within seconds (the
// agent's report), and its check is clean.
func TestPrivilegedLabVMPorts(t *testing.T) {
	requireRoot(t)
	n := testLab(t)
	upScenario(t, n, "flat-l2")
	ctx := t.Context()
	const host = "host-2"

	for i := 1; i <= 8; i++ {
		vs, err := AddVM(ctx, n.Lab, n.Dir, VM{Name: fmt.Sprintf("vm%d", i), Host: host}, VMOptions{})
		if vs == nil {
			t.Fatal(err)
		}
		if err != nil {
			t.Error(err) // plugged in but not routed: the checks below say why
		}
		if vs.Device != api.VMPortDevice(vs.Name) || vs.Endpoint != vs.Name {
			t.Errorf("VM %s: device %s, endpoint %s; want %s, %s", vs.Name, vs.Device, vs.Endpoint, api.VMPortDevice(vs.Name), vs.Name)
		}
	}
	for i := 1; i <= 4; i++ {
		if _, err := AddPod(ctx, n.Lab, n.Dir, Pod{Name: fmt.Sprintf("extra-%d", i), Host: host}); err != nil {
			t.Fatal(err)
		}
	}

	st, err := LoadState(n.Lab, n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := AdminClient(n)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	eps, err := c.Endpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkVMAddresses(t, st, eps, host)
	links := mustRun(t, "ip", "-n", n.Node(host), "-br", "link")
	for _, v := range st.VMs {
		if !strings.Contains(links, v.Device+"@") {
			t.Errorf("host %s has no device %s for VM %s:\n%s", host, v.Device, v.Name, links)
		}
	}

	rep, err := Probe(ctx, st.Targets())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(rep.Pods), len(st.Pods)+8; got != want {
		t.Errorf("probe matrix of %d targets, want %d pods and VMs", got, want)
	}
	requireAllReached(t, rep)

	// The server sees every address in use on the host: its pods (the
	// agent's report) and its VM ports.
	want := 8
	for _, p := range st.Pods {
		if p.Host == host {
			want++
		}
	}
	var used int
	deadline := time.Now().Add(15 * time.Second)
	for {
		blocks, err := c.Blocks(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		used = 0
		for _, bs := range blocks {
			for _, b := range bs {
				if b.Host == host {
					used += b.Used
				}
			}
		}
		if used == want || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond) // the agent reports every 2 s
	}
	if used != want {
		t.Errorf("the server counts %d addresses in use on %s, want %d (pods and VMs)", used, host, want)
	}
	chk, err := c.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !chk.Clean {
		t.Errorf("check finds problems on a healthy lab: %+v", chk.Findings)
	}
}

// checkVMAddresses: the VMs hold exactly the server's endpoints, each on
// host with its own address, and no address is held twice across pods and
// VMs.
func checkVMAddresses(t *testing.T, st *State, eps []ipam.Endpoint, host string) {
	t.Helper()
	if len(eps) != len(st.VMs) {
		t.Errorf("the server holds %d endpoints, the lab %d VMs", len(eps), len(st.VMs))
	}
	holder := map[netip.Addr]string{}
	hold := func(a netip.Addr, who string) {
		if prev, ok := holder[a]; ok {
			t.Errorf("%s is held twice: by %s and by %s", a, prev, who)
			return
		}
		holder[a] = who
	}
	for _, p := range st.Pods {
		hold(p.Addr(), "pod "+p.Name+" (agent)")
	}
	for _, e := range eps {
		hold(e.Addr, "VM "+e.ID+" (server)")
		v, ok := st.VM(e.ID)
		switch {
		case !ok:
			t.Errorf("endpoint %s at the server is no VM of the lab", e.ID)
		case v.Addr != e.Addr || e.Host != host:
			t.Errorf("VM %s has %s on %s, the server says %s on %s", v.Name, v.Addr, v.Host, e.Addr, e.Host)
		}
	}
}

// A VM port's life on a host without pods (so the server's addresses meet
// no pod's): add-vm without anyone routing the port says what is missing;
// routed ports reach every pod and each other; the report and `lab
// routes` show them; rm-vm removes the namespace and device and releases
// the address at the server.
func TestPrivilegedLabVMPortLifecycle(t *testing.T) {
	requireRoot(t)
	n := testLab(t)
	const host = "host-3"
	sc := shipped(t, "flat-l2")
	sc.Pods = slices.DeleteFunc(sc.Pods, func(p Pod) bool { return p.Host == host })
	ctx := t.Context()
	bin := testbin.Terrane(t)
	if _, err := Up(ctx, UpOptions{Name: n.Lab, Dir: n.Dir, Scenario: sc, Terrane: filepath.Join(bin, "terrane"), Progress: t.Logf}); err != nil {
		t.Fatal(err)
	}

	// A port not routed in time says what is missing (the agent looks for
	// devices every second: 1 ms is too short for it).
	_, err := AddVM(ctx, n.Lab, n.Dir, VM{Name: "unwired", Host: host}, VMOptions{WireTimeout: time.Millisecond})
	want := fmt.Sprintf("the agent on %s has not routed VM port unwired (device %s) within 1ms", host, api.VMPortDevice("unwired"))
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("add-vm of a port not routed in time: %v\nwant it to say %q", err, want)
	}
	if err := RemoveVM(ctx, n.Lab, n.Dir, "unwired"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vm-a", "vm-b"} {
		if _, err := AddVM(ctx, n.Lab, n.Dir, VM{Name: name, Host: host}, VMOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := AddVM(ctx, n.Lab, n.Dir, VM{Name: "web-1", Host: host}, VMOptions{}); err == nil || !strings.Contains(err.Error(), "taken by pod web-1") {
		t.Errorf("a VM named as a pod: %v", err)
	}
	if _, err := AddPod(ctx, n.Lab, n.Dir, Pod{Name: "vm-a", Host: "host-1"}); err == nil || !strings.Contains(err.Error(), "a VM's name") {
		t.Errorf("a pod named as a VM: %v", err)
	}

	st, err := LoadState(n.Lab, n.Dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := AdminClient(n)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	eps, err := c.Endpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkVMAddresses(t, st, eps, host)
	rep, err := Gather(ctx, st, true)
	if err != nil {
		t.Fatal(err)
	}
	requireAllReached(t, rep.Probe)
	if len(rep.Probe.Pods) != len(st.Pods)+2 {
		t.Errorf("the probe covers %d targets, want %d pods and 2 VMs", len(rep.Probe.Pods), len(st.Pods))
	}
	text := rep.Text()
	for _, v := range st.VMs {
		if !strings.Contains(text, v.Device) || !strings.Contains(text, v.Addr.String()+" (VM)") {
			t.Errorf("the report does not show VM %s (%s, %s):\n%s", v.Name, v.Addr, v.Device, text)
		}
	}
	nd, err := st.Node("vm-a")
	if err != nil || nd.Kind != "vm" {
		t.Fatalf("lab routes vm-a: node %+v, %v", nd, err)
	}
	nr, err := st.ReadNode(ctx, nd)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(nr.Text(), "default via 169.254.1.1 dev eth0") {
		t.Errorf("VM vm-a's routes:\n%s", nr.Text())
	}

	gone := st.VMs[0]
	if err := RemoveVM(ctx, n.Lab, n.Dir, gone.Name); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(labNetns(n.Prefix()), gone.Netns) {
		t.Errorf("namespace %s survives rm-vm", gone.Netns)
	}
	if links := mustRun(t, "ip", "-n", n.Node(host), "-br", "link"); strings.Contains(links, gone.Device) {
		t.Errorf("device %s survives rm-vm:\n%s", gone.Device, links)
	}
	if eps, err = c.Endpoints(ctx); err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(eps, func(e ipam.Endpoint) bool { return e.ID == gone.Endpoint }) {
		t.Errorf("endpoint %s still allocated after rm-vm", gone.Endpoint)
	}
	if st, err = LoadState(n.Lab, n.Dir); err != nil {
		t.Fatal(err)
	}
	if _, ok := st.VM(gone.Name); ok || len(st.VMs) != 1 || slices.Contains(st.Netns, gone.Netns) {
		t.Errorf("after rm-vm %s the state holds VMs %v, namespaces %v", gone.Name, st.VMs, st.Netns)
	}
	if err := RemoveVM(ctx, n.Lab, n.Dir, gone.Name); err == nil {
		t.Errorf("rm-vm of a removed VM succeeded")
	}
}
