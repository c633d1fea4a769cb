//go:build linux

package cniplugin_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types040 "github.com/containernetworking/cni/pkg/types/040"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/terrane-net/terrane/internal/cniapi"
)

func parseResult100(t *testing.T, out, cniVersion string) *types100.Result {
	t.Helper()
	var r types100.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("ADD result %q: %v", out, err)
	}
	if r.CNIVersion != cniVersion {
		t.Errorf("result cniVersion %q, want %q", r.CNIVersion, cniVersion)
	}
	return &r
}

// checkResult checks an ADD result against the pod and the agent.
func checkResult(t *testing.T, l *lab, pod *labNS, r *types100.Result) netip.Addr {
	t.Helper()
	_, addr, ok := l.agent.holds(attachmentOf(pod))
	if !ok {
		t.Fatalf("the agent does not hold %s", attachmentOf(pod).ID())
	}
	if len(r.Interfaces) != 2 || r.Interfaces[0].Name != hostVethOf(pod) || r.Interfaces[0].Sandbox != "" ||
		r.Interfaces[1].Name != "eth0" || r.Interfaces[1].Sandbox != pod.path || r.Interfaces[0].Mac == "" || r.Interfaces[1].Mac == "" {
		t.Errorf("interfaces %+v", r.Interfaces)
	}
	if len(r.IPs) != 1 || r.IPs[0].Address.String() != addr.String() || r.IPs[0].Gateway.String() != "169.254.1.1" ||
		r.IPs[0].Interface == nil || *r.IPs[0].Interface != 1 {
		t.Errorf("ips %+v, want %s via 169.254.1.1 on interface 1", r.IPs, addr)
	}
	if len(r.Routes) != 1 || r.Routes[0].Dst.String() != "0.0.0.0/0" || r.Routes[0].GW.String() != "169.254.1.1" {
		t.Errorf("routes %+v", r.Routes)
	}
	mac := run(t, "ip", "-n", pod.name, "-o", "link", "show", "dev", "eth0")
	if !strings.Contains(mac, "link/ether "+r.Interfaces[1].Mac) || !strings.Contains(mac, "mtu 1400") {
		t.Errorf("pod eth0 %q, want MAC %s and MTU 1400", mac, r.Interfaces[1].Mac)
	}
	return addr.Addr()
}

func ping(t *testing.T, from *labNS, to netip.Addr) {
	t.Helper()
	run(t, "ip", "netns", "exec", from.name, "ping", "-c", "1", "-W", "5", to.String())
}

// tcpEcho connects from one pod to a listener in the other and checks the
// listener sees the pod's own address (routed, not translated).
func tcpEcho(t *testing.T, from, to *labNS, fromAddr, toAddr netip.Addr) {
	t.Helper()
	var ln net.Listener
	if err := inNetns(to.path, func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(toAddr, 0).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- "0.0.0.0:0" // not fromAddr
			t.Errorf("accept: %v", err)
			return
		}
		defer c.Close()
		peer <- c.RemoteAddr().String()
		_, _ = io.Copy(c, c)
	}()
	var conn net.Conn
	if err := inNetns(from.path, func() (err error) {
		conn, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial %s from %s: %v", ln.Addr(), from.name, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("terrane")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "terrane" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
	if got := <-peer; netip.MustParseAddrPort(got).Addr() != fromAddr {
		t.Errorf("the listener saw %s, want %s", got, fromAddr)
	}
}

// TestPrivilegedCNItoolPods drives the plugin through cnitool like a
// runtime: two pods on one host reach each other by ICMP and TCP; network
// choice from CAP_ARGS (pod annotations) and CNI_ARGS reaches the agent;
// STATUS and CHECK pass and CHECK catches a missing route; a repeated ADD
// gives the same address; DEL is idempotent, works on a deleted namespace,
// and with the agent down removes the pair and queues the release in the
// agent's format.
func TestPrivilegedCNItoolPods(t *testing.T) {
	l := newLab(t)
	podA, podB, podC := newLabNS(t, "pod"), newLabNS(t, "pod"), newLabNS(t, "pod")
	defer noGlobalCache(t, podA, podB, podC)
	net := l.networkV11

	l.cnitoolOK(t, nil, "status", net, l.host.path)

	outA := l.cnitoolOK(t, []string{`CAP_ARGS={"io.kubernetes.cri.pod-annotations":{"terrane.io/network":"blue"}}`},
		"add", net, podA.path)
	addrA := checkResult(t, l, podA, parseResult100(t, outA, "1.1.0"))
	outB := l.cnitoolOK(t, []string{"CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=web;K8S_POD_NAME=front-0;TERRANE_NETWORK=red",
		`CAP_ARGS={"io.kubernetes.cri.pod-annotations":{"terrane.io/network":"blue"}}`}, "add", net, podB.path)
	addrB := checkResult(t, l, podB, parseResult100(t, outB, "1.1.0"))

	if req, _, _ := l.agent.holds(attachmentOf(podA)); req.Network != "blue" || req.Netns != podA.path || req.HostVeth != hostVethOf(podA) {
		t.Errorf("agent request for A: %+v, want network blue from the annotation", req)
	}
	if req, _, _ := l.agent.holds(attachmentOf(podB)); req.Network != "red" || req.PodNamespace != "web" || req.PodName != "front-0" {
		t.Errorf("agent request for B: %+v, want network red from CNI_ARGS over the annotation, pod web/front-0", req)
	}
	wantRoutes := "default via 169.254.1.1 dev eth0 \n169.254.1.1 dev eth0 scope link \n"
	if got := run(t, "ip", "-n", podA.name, "-4", "route", "show"); got != wantRoutes {
		t.Errorf("pod A routes:\n%s\nwant:\n%s", got, wantRoutes)
	}

	ping(t, podA, addrB)
	ping(t, podB, addrA)
	tcpEcho(t, podA, podB, addrA, addrB)
	tcpEcho(t, podB, podA, addrB, addrA)

	l.cnitoolOK(t, nil, "check", net, podA.path)
	l.cnitoolOK(t, nil, "check", net, podB.path)
	run(t, "ip", "-n", podB.name, "route", "del", "default")
	if _, err := l.cnitoolRun(nil, "check", net, podB.path); err == nil || !strings.Contains(err.Error(), "no route 0.0.0.0/0 via 169.254.1.1 dev eth0") {
		t.Errorf("CHECK without the default route: %v, want it to name the route", err)
	}

	// A repeated ADD (the runtime retrying) rebuilds the pair with the
	// same address, and the pod works again.
	outB2 := l.cnitoolOK(t, nil, "add", net, podB.path)
	if addr := checkResult(t, l, podB, parseResult100(t, outB2, "1.1.0")); addr != addrB {
		t.Errorf("repeated ADD: %s, want %s again", addr, addrB)
	}
	l.cnitoolOK(t, nil, "check", net, podB.path)
	ping(t, podA, addrB)

	// DEL with the agent up, twice.
	for range 2 {
		l.cnitoolOK(t, nil, "del", net, podB.path)
	}
	if _, _, ok := l.agent.holds(attachmentOf(podB)); ok {
		t.Error("the agent still holds B after DEL")
	}
	if l.host.hasLink(t, hostVethOf(podB)) || podB.hasLink(t, "eth0") {
		t.Error("B's veth pair survived DEL")
	}

	// DEL of a pod whose namespace is already gone.
	l.cnitoolOK(t, nil, "add", net, podC.path)
	podC.del(t)
	l.cnitoolOK(t, nil, "del", net, podC.path)
	if _, _, ok := l.agent.holds(attachmentOf(podC)); ok {
		t.Error("the agent still holds C after DEL")
	}
	if l.host.hasLink(t, hostVethOf(podC)) {
		t.Error("C's host veth survived DEL")
	}

	// DEL with the agent down: success, no veth, and a queued release.
	l.agent.stop()
	if _, err := l.cnitoolRun(nil, "status", net, l.host.path); err == nil || !strings.Contains(err.Error(), "not reachable") {
		t.Errorf("STATUS with the agent down: %v, want the agent not reachable", err)
	}
	l.cnitoolOK(t, nil, "del", net, podA.path)
	if l.host.hasLink(t, hostVethOf(podA)) || podA.hasLink(t, "eth0") {
		t.Error("A's veth pair survived DEL with the agent down")
	}
	file := filepath.Join(l.queue, cniapi.QueueFile(attachmentOf(podA)))
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("no queued release: %v", err)
	}
	want := fmt.Sprintf(`{"containerID":%q,"ifName":"eth0"}`, containerID(podA.path))
	if strings.TrimSpace(string(data)) != want {
		t.Errorf("queued release %s, want %s", data, want)
	}
	// The agent, back, replays the queue.
	l.agent.start(t)
	queued, err := cniapi.ReadQueued(l.queue)
	if err != nil || len(queued) != 1 || queued[0].Attachment != attachmentOf(podA) {
		t.Fatalf("ReadQueued = %+v, %v", queued, err)
	}
	if _, _, ok := l.agent.holds(attachmentOf(podA)); !ok {
		t.Fatal("the agent lost A before the replay: the test proves nothing")
	}
	for _, q := range queued {
		if err := l.agent.Del(t.Context(), q.Attachment); err != nil {
			t.Fatal(err)
		}
		if err := cniapi.RemoveQueued(l.queue, q); err != nil {
			t.Fatal(err)
		}
	}
	if n := l.agent.count(); n != 0 {
		t.Errorf("the agent holds %d attachments at the end, want 0", n)
	}
}

// TestPrivilegedCNItoolGC: GC hands the runtime's valid attachments to the
// agent, which releases the others (plugin run directly with
// cni.dev/valid-attachments, as libcni does); and cnitool gc, which lists
// none, releases a pod the runtime no longer knows (its cache entry lost).
func TestPrivilegedCNItoolGC(t *testing.T) {
	l := newLab(t)
	podA, podB, podC := newLabNS(t, "pod"), newLabNS(t, "pod"), newLabNS(t, "pod")
	defer noGlobalCache(t, podA, podB, podC)
	for _, p := range []*labNS{podA, podB, podC} {
		l.cnitoolOK(t, nil, "add", l.networkV11, p.path)
	}

	conf := l.pluginConf()
	conf["cniVersion"], conf["name"] = "1.1.0", l.networkV11
	conf["cni.dev/valid-attachments"] = []types.GCAttachment{
		{ContainerID: containerID(podA.path), IfName: "eth0"},
		{ContainerID: containerID(podB.path), IfName: "eth0"},
	}
	stdin, _ := json.Marshal(conf)
	if out, err := l.runPlugin([]string{"CNI_COMMAND=GC"}, stdin); err != nil {
		t.Fatalf("GC: %v %s", err, out)
	}
	for _, p := range []*labNS{podA, podB} {
		if _, _, ok := l.agent.holds(attachmentOf(p)); !ok || !l.host.hasLink(t, hostVethOf(p)) {
			t.Errorf("GC released valid %s", attachmentOf(p).ID())
		}
	}
	if _, _, ok := l.agent.holds(attachmentOf(podC)); ok || l.host.hasLink(t, hostVethOf(podC)) {
		t.Errorf("GC kept invalid %s", attachmentOf(podC).ID())
	}

	// The runtime forgets A (its cache entry is gone) and C (DEL'd);
	// cnitool gc DELs what it knows (B) and GCs the rest (A).
	l.cnitoolOK(t, nil, "del", l.networkV11, podC.path)
	matches, _ := filepath.Glob(filepath.Join(l.cacheDir, "results", "*"+containerID(podA.path)+"*"))
	if len(matches) == 0 {
		t.Fatalf("no cache entry for A in %s", l.cacheDir)
	}
	for _, m := range matches {
		if err := os.Remove(m); err != nil {
			t.Fatal(err)
		}
	}
	l.cnitoolOK(t, nil, "gc", l.networkV11, l.host.path)
	if n := l.agent.count(); n != 0 {
		t.Errorf("after cnitool gc the agent holds %d attachments, want 0", n)
	}
	for _, p := range []*labNS{podA, podB} {
		if l.host.hasLink(t, hostVethOf(p)) {
			t.Errorf("%s survived gc", hostVethOf(p))
		}
	}
}

// TestPrivilegedCNItoolVersions: the plugin answers VERSION and its About
// line, and ADD, CHECK and DEL work in networks of cniVersion 1.0.0 and
// 0.4.0 with results in those versions' shapes.
func TestPrivilegedCNItoolVersions(t *testing.T) {
	l := newLab(t)
	out, err := l.runPlugin([]string{"CNI_COMMAND=VERSION"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var vi struct {
		CNIVersion        string   `json:"cniVersion"`
		SupportedVersions []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal([]byte(out), &vi); err != nil {
		t.Fatalf("VERSION %q: %v", out, err)
	}
	for _, v := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		if !slices.Contains(vi.SupportedVersions, v) {
			t.Errorf("VERSION %s lacks %s", out, v)
		}
	}
	about := exec.Command(filepath.Join(l.pluginDir, "terrane-cni"))
	about.Env = cleanEnv()
	if b, _ := about.CombinedOutput(); !strings.Contains(string(b), "terrane-cni") || !strings.Contains(string(b), "1.1.0") {
		t.Errorf("about: %q", b)
	}

	t.Run("1.0.0", func(t *testing.T) {
		pod := newLabNS(t, "pod")
		defer noGlobalCache(t, pod)
		out := l.cnitoolOK(t, nil, "add", l.networkV1, pod.path)
		checkResult(t, l, pod, parseResult100(t, out, "1.0.0"))
		l.cnitoolOK(t, nil, "check", l.networkV1, pod.path)
		l.cnitoolOK(t, nil, "del", l.networkV1, pod.path)
		if _, _, ok := l.agent.holds(attachmentOf(pod)); ok {
			t.Error("still held after DEL")
		}
	})
	t.Run("0.4.0", func(t *testing.T) {
		pod := newLabNS(t, "pod")
		defer noGlobalCache(t, pod)
		out := l.cnitoolOK(t, nil, "add", l.v4, pod.path)
		var r types040.Result
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("result %q: %v", out, err)
		}
		_, addr, _ := l.agent.holds(attachmentOf(pod))
		if r.CNIVersion != "0.4.0" || len(r.IPs) != 1 || r.IPs[0].Address.String() != addr.String() || len(r.Interfaces) != 2 {
			t.Errorf("0.4.0 result %s, want %s", out, addr)
		}
		l.cnitoolOK(t, nil, "check", l.v4, pod.path)
		l.cnitoolOK(t, nil, "del", l.v4, pod.path)
		if _, _, ok := l.agent.holds(attachmentOf(pod)); ok {
			t.Error("still held after DEL")
		}
	})
}
