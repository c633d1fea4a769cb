package gobgp

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/bgp"
)

// envSpeaker selects speakerMain in a re-executed test binary: the speaker
// runs in its own process so that GoBGP's sockets are created inside the
// host's network namespace (`ip netns exec`); goroutines are not pinned to
// a namespace.
const envSpeaker = "TERRANE_TEST_BGP_SPEAKER"

func TestMain(m *testing.M) {
	if cfg := os.Getenv(envSpeaker); cfg != "" {
		os.Exit(speakerMain(cfg, os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// childConfig is the speaker process's configuration (JSON in envSpeaker).
type childConfig struct {
	RouterID        netip.Addr `json:"routerID"`
	NextHop6        netip.Addr `json:"nextHop6,omitzero"`
	ASN             uint32     `json:"asn"`
	GracefulRestart int        `json:"gracefulRestart"` // seconds
}

// speakerMain runs a speaker: each stdin line is a Desired (JSON) to
// apply, answered "ok" or "error: …"; the line "status" is answered with
// the status as JSON; end of input stops the speaker with a Cease.
func speakerMain(cfgJSON string, in io.Reader, out io.Writer) int {
	var cc childConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cc); err != nil {
		fmt.Fprintln(os.Stderr, "speaker config:", err)
		return 2
	}
	ctx := context.Background()
	s, err := Start(ctx, bgp.Config{RouterID: cc.RouterID, NextHop6: cc.NextHop6, ASN: cc.ASN, GracefulRestart: time.Duration(cc.GracefulRestart) * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() == "status" {
			st, err := s.Status(ctx)
			if err != nil {
				fmt.Fprintln(out, "error:", err)
				continue
			}
			b, _ := json.Marshal(st)
			fmt.Fprintln(out, string(b))
			continue
		}
		var d bgp.Desired
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			fmt.Fprintln(out, "error:", err)
			continue
		}
		if err := s.Apply(ctx, d); err != nil {
			fmt.Fprintln(out, "error:", err)
			continue
		}
		fmt.Fprintln(out, "ok")
	}
	if err := s.Stop(ctx, false); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// child is a speaker process in the host namespace.
type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startChild(t *testing.T, netns string, cc childConfig) *child {
	t.Helper()
	cfg, _ := json.Marshal(cc)
	cmd := exec.Command("ip", "netns", "exec", netns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envSpeaker+"="+string(cfg))
	cmd.Stderr = io.Discard
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	t.Cleanup(func() { c.kill() })
	return c
}

// ask sends one line and returns the answer.
func (c *child) ask(t *testing.T, line string) string {
	t.Helper()
	if _, err := fmt.Fprintln(c.in, line); err != nil {
		t.Fatalf("speaker process: %v", err)
	}
	if !c.out.Scan() {
		t.Fatalf("speaker process ended: %v", c.out.Err())
	}
	return c.out.Text()
}

func (c *child) apply(t *testing.T, d bgp.Desired) {
	t.Helper()
	b, _ := json.Marshal(d)
	if got := c.ask(t, string(b)); got != "ok" {
		t.Fatalf("apply %s: %s", b, got)
	}
}

func (c *child) status(t *testing.T) bgp.Status {
	t.Helper()
	var st bgp.Status
	if err := json.Unmarshal([]byte(c.ask(t, "status")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// kill ends the process at once (SIGKILL: no Cease, sockets just close).
func (c *child) kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	// ip netns exec execs the test binary, so the pid is the speaker's.
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_ = c.cmd.Wait()
}

// stop closes stdin: the speaker stops with a Cease and exits.
func (c *child) stop(t *testing.T) {
	t.Helper()
	c.in.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("speaker process: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("speaker process did not exit after its input closed")
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// lab is a "tor" namespace running BIRD and a "host" namespace for the
// speaker, joined by a veth.
type lab struct {
	tor, host string // namespace names
	torIP     netip.Addr
	hostIP    netip.Addr
	// torIP6 and hostIP6 are set on a dual-stack lab (newDualLab).
	torIP6, hostIP6 netip.Addr
	ctl             string // BIRD's control socket
	dir             string
	birdProcess     *os.Process
}

const (
	labTorASN  = 65001
	labHostASN = 64601
	labMD5     = "rack-secret"
	labGR      = 6 // seconds: short, so the test sees stale routes expire
)

func newLab(t *testing.T) *lab {
	t.Helper()
	return newLabOf(t, false)
}

// newDualLab is newLab with IPv6 addresses on the veth too, and BIRD
// taking IPv6 unicast on the same (IPv4) session.
func newDualLab(t *testing.T) *lab {
	t.Helper()
	return newLabOf(t, true)
}

func newLabOf(t *testing.T, dual bool) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and runs BIRD in one (run as root, e.g. via .ci/run)")
	}
	for _, bin := range []string{"bird", "birdc", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not found: apt-get install bird2 iproute2", bin)
		}
	}
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	l := &lab{tor: "terrane-test-tor-" + id, host: "terrane-test-host-" + id,
		torIP: netip.MustParseAddr("192.168.77.1"), hostIP: netip.MustParseAddr("192.168.77.2"), dir: t.TempDir()}
	l.ctl = filepath.Join(l.dir, "bird.ctl")
	t.Cleanup(func() {
		if l.birdProcess != nil {
			_ = l.birdProcess.Kill()
			_, _ = l.birdProcess.Wait()
		}
		for _, ns := range []string{l.tor, l.host} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	run(t, "ip", "netns", "add", l.tor)
	run(t, "ip", "netns", "add", l.host)
	vt, vh := "trnt"+id, "trnh"+id
	run(t, "ip", "link", "add", vt, "netns", l.tor, "type", "veth", "peer", "name", vh, "netns", l.host)
	run(t, "ip", "-n", l.tor, "addr", "add", l.torIP.String()+"/24", "dev", vt)
	run(t, "ip", "-n", l.host, "addr", "add", l.hostIP.String()+"/24", "dev", vh)
	for ns, dev := range map[string]string{l.tor: vt, l.host: vh} {
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		run(t, "ip", "-n", ns, "link", "set", dev, "up")
	}
	kernel6, channel6 := "", ""
	if dual {
		l.torIP6, l.hostIP6 = netip.MustParseAddr("fd00:77::1"), netip.MustParseAddr("fd00:77::2")
		run(t, "ip", "-n", l.tor, "addr", "add", l.torIP6.String()+"/64", "dev", vt, "nodad")
		run(t, "ip", "-n", l.host, "addr", "add", l.hostIP6.String()+"/64", "dev", vh, "nodad")
		kernel6 = "protocol kernel { ipv6 { export where source = RTS_BGP; }; }\n"
		channel6 = "\n\tipv6 { import all; export none; };"
	}
	conf := fmt.Sprintf(`router id %s;
protocol device { scan time 1; }
protocol kernel {
	ipv4 { export where source = RTS_BGP; };
}
protocol bgp host {
	local %s as %d;
	neighbor %s as %d;
	direct;
	password "%s";
	graceful restart on;
	connect retry time 1;
	ipv4 { import all; export none; };%s
}
%s`, l.torIP, l.torIP, labTorASN, l.hostIP, labHostASN, labMD5, channel6, kernel6)
	confPath := filepath.Join(l.dir, "bird.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.tor, "bird", "-c", confPath, "-s", l.ctl, "-P", filepath.Join(l.dir, "bird.pid"), "-f")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if testing.Verbose() {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l.birdProcess = cmd.Process
	deadline := time.Now().Add(10 * time.Second)
	for exec.Command("birdc", "-s", l.ctl, "show", "status").Run() != nil {
		if time.Now().After(deadline) {
			t.Fatal("BIRD did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return l
}

var birdRouteRe = regexp.MustCompile(`(?m)^(\d+\.\d+\.\d+\.\d+/\d+)\s+unicast \[host [^\]]*\] \* \(100\) \[AS(\d+)i\]\n\s+via (\S+)`)

// birdRoutes is BIRD's table of routes learned from the host, as
// "prefix via next-hop as AS", sorted.
func (l *lab) birdRoutes(t *testing.T) []string {
	t.Helper()
	out := run(t, "birdc", "-s", l.ctl, "show", "route", "protocol", "host")
	var rs []string
	for _, m := range birdRouteRe.FindAllStringSubmatch(out, -1) {
		rs = append(rs, fmt.Sprintf("%s via %s as %s", m[1], m[3], m[2]))
	}
	sort.Strings(rs)
	return rs
}

// kernelRoutes is the tor namespace's kernel table of BIRD's routes.
func (l *lab) kernelRoutes(t *testing.T) []string {
	t.Helper()
	var rs []string
	for _, line := range strings.Split(strings.TrimSpace(run(t, "ip", "-n", l.tor, "route", "show", "proto", "bird")), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[1] == "via" {
			rs = append(rs, f[0]+" via "+f[2])
		}
	}
	sort.Strings(rs)
	return rs
}

func (l *lab) want(ps ...string) (bird, kernel []string) {
	for _, p := range ps {
		bird = append(bird, fmt.Sprintf("%s via %s as %d", p, l.hostIP, labHostASN))
		kernel = append(kernel, fmt.Sprintf("%s via %s", p, l.hostIP))
	}
	sort.Strings(bird)
	sort.Strings(kernel)
	return bird, kernel
}

// waitTable waits until BIRD's table and the tor's kernel table hold
// exactly ps; it returns how long BIRD took.
func (l *lab) waitTable(t *testing.T, what string, timeout time.Duration, ps ...string) time.Duration {
	t.Helper()
	wantBird, wantKernel := l.want(ps...)
	start := time.Now()
	var gotBird, gotKernel []string
	birdAt := time.Duration(-1)
	for time.Since(start) < timeout {
		gotBird = l.birdRoutes(t)
		if birdAt < 0 && slices.Equal(gotBird, wantBird) {
			birdAt = time.Since(start)
		}
		if birdAt >= 0 {
			if gotKernel = l.kernelRoutes(t); slices.Equal(gotKernel, wantKernel) && slices.Equal(l.birdRoutes(t), wantBird) {
				return birdAt
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: BIRD holds %q, the tor's kernel %q; want %q", what, gotBird, gotKernel, wantBird)
	return 0
}

func (l *lab) childConfig() childConfig {
	return childConfig{RouterID: l.hostIP, ASN: labHostASN, GracefulRestart: labGR}
}

func (l *lab) desired(ps ...string) bgp.Desired {
	return bgp.Desired{Peers: []bgp.Peer{{Address: l.torIP, ASN: labTorASN, Password: labMD5}}, Prefixes: prefixes(ps...)}
}

// TestPrivilegedBIRDAnnounceWithdraw: a speaker in the host's namespace
// peers with BIRD 2 in the tor's over a veth (TCP MD5 on both sides); BIRD's
// table and the tor's kernel table equal the announced set after each
// Apply, a withdrawal removes the route, and a Stop's Cease removes
// everything. Logs the time from Apply to the route in BIRD.
func TestPrivilegedBIRDAnnounceWithdraw(t *testing.T) {
	l := newLab(t)
	c := startChild(t, l.host, l.childConfig())
	start := time.Now()
	c.apply(t, l.desired("10.20.0.0/27", "10.20.0.64/26"))
	l.waitTable(t, "first announcement", 20*time.Second, "10.20.0.0/27", "10.20.0.64/26")
	t.Logf("session up and first routes in BIRD's and the kernel's table %s after the first Apply", time.Since(start).Round(time.Millisecond))
	st := c.status(t)
	if len(st.Peers) != 1 || st.Peers[0].State != StateEstablished || st.Peers[0].PrefixesSent != 2 || st.Peers[0].ASN != labTorASN {
		t.Errorf("status %+v: want one established peer AS %d with 2 prefixes sent", st.Peers, labTorASN)
	}

	var took []time.Duration
	sets := [][]string{{"10.20.0.0/27", "10.20.1.0/24"}, {"10.20.1.0/24"}, {"10.20.1.0/24", "10.20.2.0/28", "10.20.3.0/24"}, {"10.20.0.0/27"}, {"10.20.0.0/27", "10.20.4.0/24"}}
	for _, set := range sets {
		t0 := time.Now()
		c.apply(t, l.desired(set...))
		l.waitTable(t, fmt.Sprintf("after Apply %v", set), 10*time.Second, set...)
		took = append(took, time.Since(t0))
	}
	slices.Sort(took)
	t.Logf("Apply → route in BIRD and the tor's kernel: median %s, max %s over %d changes", took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), len(took))

	c.apply(t, l.desired())
	l.waitTable(t, "everything withdrawn", 10*time.Second)
	c.apply(t, l.desired("10.20.5.0/24"))
	l.waitTable(t, "announced again", 10*time.Second, "10.20.5.0/24")
	t0 := time.Now()
	c.stop(t)
	l.waitTable(t, "gone after the speaker's Cease", 5*time.Second)
	t.Logf("routes gone from BIRD %s after Stop (Cease)", time.Since(t0).Round(time.Millisecond))
}

// TestPrivilegedBIRDGracefulRestart: a speaker killed with SIGKILL (no
// Cease) leaves its routes in BIRD and the tor's kernel for the
// graceful-restart time; a new speaker that comes up within it
// re-establishes and takes them over with no moment without the route; a
// speaker that does not come back loses them when the time is up.
func TestPrivilegedBIRDGracefulRestart(t *testing.T) {
	l := newLab(t)
	c := startChild(t, l.host, l.childConfig())
	c.apply(t, l.desired("10.30.0.0/24"))
	l.waitTable(t, "announced", 20*time.Second, "10.30.0.0/24")

	c.kill()
	killed := time.Now()
	time.Sleep(2 * time.Second) // BIRD sees the TCP session close at once
	l.waitTable(t, "kept after SIGKILL", time.Second, "10.30.0.0/24")
	if out := run(t, "birdc", "-s", l.ctl, "show", "protocols", "all", "host"); !strings.Contains(out, "restart") {
		t.Logf("BIRD's protocol state while the speaker is down:\n%s", out)
	}

	// A new incarnation within the restart time: the route stays in BIRD
	// throughout and the new session refreshes it (with one more prefix).
	next := startChild(t, l.host, l.childConfig())
	restarted := time.Now()
	next.apply(t, l.desired("10.30.0.0/24", "10.30.1.0/24"))
	wantBird, _ := l.want("10.30.0.0/24", "10.30.1.0/24")
	for {
		got := l.birdRoutes(t)
		if !slices.Contains(got, fmt.Sprintf("10.30.0.0/24 via %s as %d", l.hostIP, labHostASN)) {
			t.Fatalf("BIRD lost the route during the takeover (%s after the restart): %q", time.Since(restarted), got)
		}
		if slices.Equal(got, wantBird) {
			break
		}
		if time.Since(killed) > labGR*time.Second+5*time.Second {
			t.Fatalf("the restarted speaker never refreshed BIRD's table: %q", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("restarted speaker re-established and refreshed BIRD's table %s after it started (%s after the kill)",
		time.Since(restarted).Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	l.waitTable(t, "after the takeover", 5*time.Second, "10.30.0.0/24", "10.30.1.0/24")
	if st := next.status(t); len(st.Peers) != 1 || st.Peers[0].State != StateEstablished {
		t.Errorf("restarted speaker's status %+v: want the peer established", st.Peers)
	}

	// Killed again and not restarted: the stale routes go when the
	// restart time is up.
	next.kill()
	killed = time.Now()
	time.Sleep(2 * time.Second)
	l.waitTable(t, "kept after the second SIGKILL", time.Second, "10.30.0.0/24", "10.30.1.0/24")
	l.waitTable(t, "flushed when the restart time is up", labGR*time.Second+10*time.Second)
	if gone := time.Since(killed); gone < labGR*time.Second-time.Second {
		t.Errorf("stale routes flushed %s after the kill, before the %ds restart time", gone, labGR)
	} else {
		t.Logf("stale routes flushed %s after the kill (restart time %ds)", gone.Round(time.Millisecond), labGR)
	}
}

// TestPrivilegedBIRDIPv6 proves multiprotocol BGP against BIRD 2: on one
// IPv4 session the speaker announces IPv4 prefixes with its IPv4 next hop
// and IPv6 prefixes with its IPv6 address as next hop (MP_REACH_NLRI);
// BIRD installs both families in the tor's kernel via the right next hop,
// and a withdrawal of the IPv6 prefix removes it there.
func TestPrivilegedBIRDIPv6(t *testing.T) {
	l := newDualLab(t)
	cc := l.childConfig()
	cc.NextHop6 = l.hostIP6
	c := startChild(t, l.host, cc)
	c.apply(t, l.desired("10.40.0.0/26", "fd00:40::/120", "fd00:40::100/120"))
	want6 := []string{"fd00:40::/120 via " + l.hostIP6.String(), "fd00:40::100/120 via " + l.hostIP6.String()}
	kernel6 := func() []string {
		var out []string
		for _, line := range strings.Split(strings.TrimSpace(run(t, "ip", "-n", l.tor, "-6", "route", "show", "proto", "bird")), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[1] == "via" {
				out = append(out, f[0]+" via "+f[2])
			}
		}
		slices.Sort(out)
		return out
	}
	deadline := time.Now().Add(20 * time.Second)
	for !slices.Equal(kernel6(), want6) || !slices.Equal(l.kernelRoutes(t), []string{"10.40.0.0/26 via " + l.hostIP.String()}) {
		if time.Now().After(deadline) {
			t.Fatalf("the tor's kernel holds IPv6 %q and IPv4 %q; want %q and 10.40.0.0/26 via %s\nBIRD:\n%s",
				kernel6(), l.kernelRoutes(t), want6, l.hostIP, run(t, "birdc", "-s", l.ctl, "show", "route", "all"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out := run(t, "birdc", "-s", l.ctl, "show", "route", "protocol", "host", "fd00:40::/120", "all"); !strings.Contains(out, "BGP.next_hop: "+l.hostIP6.String()) {
		t.Errorf("BIRD's route for fd00:40::/120 lacks next hop %s:\n%s", l.hostIP6, out)
	}
	c.apply(t, l.desired("10.40.0.0/26", "fd00:40::/120"))
	deadline = time.Now().Add(10 * time.Second)
	for !slices.Equal(kernel6(), want6[:1]) {
		if time.Now().After(deadline) {
			t.Fatalf("after withdrawing fd00:40::100/120 the tor's kernel holds %q", kernel6())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.stop(t)
}
