//go:build linux

package cniplugin_test

// The lab the TestPrivilegedCNItool* tests drive the real plugin binary in:
// a "host" network namespace, pod namespaces, an in-test agent that does the
// host side for real (sysctls and routes), and cnitool run the way a runtime
// runs plugins.

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/cniapi/cnihttp"
	"github.com/terrane-net/terrane/internal/testbin"
	"github.com/terrane-net/terrane/internal/testnet"
)

const cnitoolVersion = "v1.3.1"

func TestMain(m *testing.M) { testbin.Main(m) }

// buildTools builds the plugin (with terrane beside it) and installs cnitool,
// once per test binary run.
func buildTools(t *testing.T) (pluginDir, cnitoolPath string) {
	t.Helper()
	return testbin.Terrane(t), filepath.Join(testbin.Tool(t, "cnitool", "github.com/containernetworking/cni/cnitool", cnitoolVersion), "cnitool")
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to create network namespaces and mounts; run `go test` as root")
	}
	for _, tool := range []string{"ip", "ping", "mount", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("privileged test: needs %s (iproute2, iputils-ping, mount)", tool)
		}
	}
}

// labNS is a named network namespace deleted when the test ends.
type labNS struct {
	name, path string
}

func newLabNS(t *testing.T, role string) *labNS {
	t.Helper()
	name := testnet.NewNS(t, role)
	return &labNS{name: name, path: "/run/netns/" + name}
}

func (ns *labNS) del(t *testing.T) {
	t.Helper()
	testnet.Run(t, "ip", "netns", "del", ns.name)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	return testnet.Run(t, name, args...)
}

// hasLink reports whether the namespace has an interface called name.
func (ns *labNS) hasLink(t *testing.T, name string) bool {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns.name, "-o", "link", "show", "dev", name).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "does not exist") {
			return false
		}
		t.Fatalf("ip link show %s: %v: %s", name, err, out)
	}
	return true
}

// inNetns runs fn on an OS thread that has entered the namespace at path.
// The thread stays locked, so the runtime discards it afterwards.
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// labAgent is an in-test cniapi.Agent that hands out addresses from
// 10.244.0.0/24 (and from fd00:244::/120 when the request names two
// networks, "v4,v6") and, like the real agent, prepares each host veth and
// routes the pod's addresses to it in the host namespace.
type labAgent struct {
	t    *testing.T
	host *labNS

	mu    sync.Mutex
	next  int
	held  map[cniapi.Attachment]cniapi.AddRequest
	addr  map[cniapi.Attachment]netip.Prefix
	addr6 map[cniapi.Attachment]netip.Prefix

	srv    *http.Server
	socket string
}

var _ cniapi.Agent = (*labAgent)(nil)

func (a *labAgent) ip(args ...string) error {
	out, err := exec.Command("ip", append([]string{"-n", a.host.name}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (a *labAgent) sysctl(kv ...string) error { return nsSysctl(a.host, kv...) }

// nsSysctl sets "net.ipv4.x.y=v" sysctls in ns through /proc/sys, which
// shows the namespace of the process that opens it (no procps needed).
func nsSysctl(ns *labNS, kv ...string) error {
	var script strings.Builder
	for _, s := range kv {
		k, v, _ := strings.Cut(s, "=")
		fmt.Fprintf(&script, "echo %s >/proc/sys/%s && ", v, strings.ReplaceAll(k, ".", "/"))
	}
	script.WriteString("true")
	out, err := exec.Command("ip", "netns", "exec", ns.name, "sh", "-c", script.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("sysctl %s: %v: %s", strings.Join(kv, " "), err, out)
	}
	return nil
}

func (a *labAgent) Add(_ context.Context, req cniapi.AddRequest) (cniapi.AddResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	addr, ok := a.addr[req.Attachment]
	if !ok {
		a.next++
		addr = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, 0, byte(a.next + 1)}), 32)
	}
	v := req.HostVeth
	if err := a.sysctl("net.ipv4.conf."+v+".proxy_arp=1", "net.ipv4.neigh."+v+".proxy_delay=0",
		"net.ipv4.conf."+v+".forwarding=1", "net.ipv4.conf."+v+".rp_filter=1"); err != nil {
		return cniapi.AddResponse{}, err
	}
	if err := a.ip("route", "replace", addr.String(), "dev", v); err != nil {
		return cniapi.AddResponse{}, err
	}
	network := req.Network
	if network == "" {
		network = "default"
	}
	resp := cniapi.AddResponse{Network: network, Addr: addr, Gateway: cniapi.GatewayV4}
	if first, second, dual := strings.Cut(req.Network, ","); dual {
		resp.Network = first
		addr6 := netip.PrefixFrom(netip.MustParseAddr(fmt.Sprintf("fd00:244::%x", a.next+1)), 128)
		var kv []string
		for _, s := range cniapi.HostSideSysctlsV6(v) {
			kv = append(kv, "net."+strings.ReplaceAll(s[0], "/", ".")+"="+s[1])
		}
		if err := a.sysctl(kv...); err != nil {
			return cniapi.AddResponse{}, err
		}
		if err := a.ip("-6", "route", "replace", addr6.String(), "dev", v); err != nil {
			return cniapi.AddResponse{}, err
		}
		a.addr6[req.Attachment] = addr6
		resp.Second = &cniapi.Address{Network: second, Addr: addr6, Gateway: cniapi.GatewayV6}
	}
	a.held[req.Attachment], a.addr[req.Attachment] = req, addr
	return resp, nil
}

func (a *labAgent) release(at cniapi.Attachment) {
	if addr, ok := a.addr[at]; ok {
		_ = a.ip("route", "del", addr.String()) // gone with its veth already, maybe
	}
	if addr, ok := a.addr6[at]; ok {
		_ = a.ip("-6", "route", "del", addr.String())
	}
	delete(a.held, at)
	delete(a.addr, at)
	delete(a.addr6, at)
}

func (a *labAgent) Del(_ context.Context, at cniapi.Attachment) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.release(at)
	return nil
}

func (a *labAgent) Check(_ context.Context, at cniapi.Attachment) (cniapi.CheckResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	req, ok := a.held[at]
	if !ok {
		return cniapi.CheckResponse{}, &cniapi.Error{Code: cniapi.CodeNotFound, Message: "no attachment " + at.ID()}
	}
	resp := cniapi.CheckResponse{Network: req.Network, Addr: a.addr[at], Gateway: cniapi.GatewayV4, HostVeth: req.HostVeth, Netns: req.Netns}
	if addr6, ok := a.addr6[at]; ok {
		first, second, _ := strings.Cut(req.Network, ",")
		resp.Network, resp.Second = first, &cniapi.Address{Network: second, Addr: addr6, Gateway: cniapi.GatewayV6}
	}
	return resp, nil
}

// GC releases what is not valid and deletes its host veth, as the real
// agent does.
func (a *labAgent) GC(_ context.Context, req cniapi.GCRequest) (cniapi.GCResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	valid := map[cniapi.Attachment]bool{}
	for _, v := range req.Valid {
		valid[v] = true
	}
	resp := cniapi.GCResponse{Released: []cniapi.Attachment{}}
	for at, r := range a.held {
		if valid[at] {
			continue
		}
		a.release(at)
		_ = a.ip("link", "del", r.HostVeth)
		resp.Released = append(resp.Released, at)
	}
	return resp, nil
}

func (a *labAgent) Status(context.Context) cniapi.StatusResponse {
	return cniapi.StatusResponse{Ready: true}
}

// holds returns the attachment's request and address, if held.
func (a *labAgent) holds(at cniapi.Attachment) (cniapi.AddRequest, netip.Prefix, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	req, ok := a.held[at]
	return req, a.addr[at], ok
}

func (a *labAgent) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.held)
}

// start serves the agent on its socket.
func (a *labAgent) start(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("unix", a.socket)
	if err != nil {
		t.Fatalf("listen on %s: %v", a.socket, err)
	}
	a.srv = &http.Server{Handler: cnihttp.Handler(a)}
	srv := a.srv
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("agent serve: %v", err)
		}
	}()
}

// stop closes the server; the listener's close removes the socket.
func (a *labAgent) stop() {
	if a.srv != nil {
		a.srv.Close()
		a.srv = nil
	}
}

// lab is one test's world: the host namespace, the agent, the network
// configurations and a private libcni cache.
type lab struct {
	host                      *labNS
	agent                     *labAgent
	pluginDir, cnitool        string
	confDir, cacheDir, queue  string
	networkV11, networkV1, v4 string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	requireRoot(t)
	pluginDir, cnitoolPath := buildTools(t)
	// cnitool keeps its cache under /var/lib/cni; each cnitool run bind
	// mounts the test's own directory there in a private mount namespace,
	// so the mount point must exist.
	if err := os.MkdirAll("/var/lib/cni", 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l := &lab{
		host:      newLabNS(t, "host"),
		pluginDir: pluginDir, cnitool: cnitoolPath,
		confDir:  filepath.Join(dir, "net.d"),
		cacheDir: filepath.Join(dir, "cni-cache"),
		queue:    filepath.Join(dir, "queue"),
	}
	for _, d := range []string{l.confDir, l.cacheDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The host side the agent's deployment provides: forwarding and the
	// gateway address routed locally, so proxy ARP answers for it.
	run(t, "ip", "-n", l.host.name, "route", "add", "169.254.1.1/32", "dev", "lo")
	if err := nsSysctl(l.host, "net.ipv4.ip_forward=1"); err != nil {
		t.Fatal(err)
	}

	l.agent = &labAgent{t: t, host: l.host, socket: filepath.Join(dir, "agent.sock"),
		held: map[cniapi.Attachment]cniapi.AddRequest{}, addr: map[cniapi.Attachment]netip.Prefix{}, addr6: map[cniapi.Attachment]netip.Prefix{}}
	l.agent.start(t)
	t.Cleanup(l.agent.stop)

	l.networkV11 = l.writeConflist(t, "terrane", "1.1.0")
	l.networkV1 = l.writeConflist(t, "terrane-v1", "1.0.0")
	l.v4 = l.writeConflist(t, "terrane-v04", "0.4.0")
	return l
}

func (l *lab) pluginConf() map[string]any {
	return map[string]any{
		"type":         "terrane-cni",
		"agentSocket":  l.agent.socket,
		"queueDir":     l.queue,
		"mtu":          1400,
		"timeout":      "5s",
		"capabilities": map[string]bool{cniapi.PodAnnotationsCapability: true},
	}
}

func (l *lab) writeConflist(t *testing.T, name, cniVersion string) string {
	t.Helper()
	b, err := json.MarshalIndent(map[string]any{
		"cniVersion": cniVersion, "name": name, "plugins": []any{l.pluginConf()},
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.confDir, name+".conflist"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// cnitoolRun runs `cnitool args...` in the host namespace with the lab's
// CNI_PATH, NETCONFPATH and libcni cache, plus env (CNI_ARGS, CAP_ARGS,
// CNI_IFNAME).
func (l *lab) cnitoolRun(env []string, args ...string) (string, error) {
	script := `mount --bind "$1" /var/lib/cni && shift && exec "$@"`
	cmdArgs := append([]string{"netns", "exec", l.host.name, "sh", "-c", script, "sh", l.cacheDir, l.cnitool}, args...)
	cmd := exec.Command("ip", cmdArgs...)
	cmd.Env = append(cleanEnv(), "CNI_PATH="+l.pluginDir, "NETCONFPATH="+l.confDir)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("cnitool %s: %v: %s%s", strings.Join(args, " "), err, stderr.Bytes(), stdout.Bytes())
	}
	return stdout.String(), nil
}

func (l *lab) cnitoolOK(t *testing.T, env []string, args ...string) string {
	t.Helper()
	out, err := l.cnitoolRun(env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cleanEnv is the test's environment without the CNI variables a runtime
// sets, so only what a test passes reaches cnitool.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CNI_") && !strings.HasPrefix(kv, "CAP_ARGS=") && !strings.HasPrefix(kv, "NETCONFPATH=") {
			env = append(env, kv)
		}
	}
	return env
}

// runPlugin runs the plugin binary directly, as libcni does, in the host
// namespace.
func (l *lab) runPlugin(env []string, stdin []byte) (string, error) {
	cmd := exec.Command("ip", "netns", "exec", l.host.name, filepath.Join(l.pluginDir, "terrane-cni"))
	cmd.Env = append(cleanEnv(), "CNI_PATH="+l.pluginDir)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("terrane-cni: %v: %s%s", err, stderr.Bytes(), stdout.Bytes())
	}
	return stdout.String(), err
}

// containerID is the ID cnitool gives the attachment in the namespace at
// path.
func containerID(path string) string {
	s := sha512.Sum512([]byte(path))
	return fmt.Sprintf("cnitool-%x", s[:10])
}

func attachmentOf(ns *labNS) cniapi.Attachment {
	return cniapi.Attachment{ContainerID: containerID(ns.path), IfName: "eth0"}
}

func hostVethOf(ns *labNS) string { return cniapi.HostVeth(containerID(ns.path), "eth0") }

// noGlobalCache checks that nothing of the test reached the machine's own
// libcni cache.
func noGlobalCache(t *testing.T, pods ...*labNS) {
	t.Helper()
	for _, p := range pods {
		matches, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", "*"+containerID(p.path)+"*"))
		if len(matches) > 0 {
			t.Errorf("the test wrote to the machine's libcni cache: %v", matches)
			for _, m := range matches {
				os.Remove(m)
			}
		}
	}
}
