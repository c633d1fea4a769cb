package labbench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/terrane-net/terrane/internal/dataplane/linux"
	"github.com/terrane-net/terrane/internal/lab"
)

// tputScenario: two hosts on one L2 segment, one pod each.
const tputScenario = `
name: bench-throughput
description: two hosts on one L2 segment, one pod each
topology: |
  apiVersion: terrane.io/v1
  kind: Topology
  networks:
    - name: bench
      cidr: 10.10.0.0/16
      blockSize: 26
      default: true
  topologies:
    - networks: [bench]
      groups:
        - name: segment
          routing: l2
segments:
  - name: lan
    subnet: 192.168.10.0/24
hosts:
  - {name: host-1, segment: lan, ip: 192.168.10.11}
  - {name: host-2, segment: lan, ip: 192.168.10.12}
pods:
  - {name: a, host: host-1}
  - {name: b, host: host-2}
`

// The VXLAN overlay built beside Terrane on the same hosts: what a
// flannel- or VXLAN-bridge CNI sets up, by hand.
const (
	vxlanID     = 42
	vxlanPort   = 4789
	vxlanDev    = "vxlan42"
	vxlanBridge = "br-overlay"
	vxlanVeth   = "ovl0" // host end; the overlay pod's end is eth0
	overlayMTU  = 1450   // 1500 - 50 bytes of VXLAN encapsulation
	iperfPort   = 5201   // the sequential rounds' iperf3 servers
	sharedPort  = 5202   // the shared-CPU rounds' pinned iperf3 servers
)

var overlayAddrs = []netip.Prefix{netip.MustParsePrefix("10.250.0.1/24"), netip.MustParsePrefix("10.250.0.2/24")}

// overlayAddrs6 are the overlay pods' IPv6 addresses (--ipv6).
var overlayAddrs6 = []netip.Prefix{netip.MustParsePrefix("fd00:250::1/64"), netip.MustParsePrefix("fd00:250::2/64")}

// tputScenario6 is tputScenario on a dual-stack segment with an IPv6
// network beside the IPv4 one; the pods are dual-stack.
var tputScenario6 = strings.NewReplacer(
	"    - name: bench\n      cidr: 10.10.0.0/16\n      blockSize: 26\n      default: true\n",
	"    - name: bench\n      cidr: 10.10.0.0/16\n      blockSize: 26\n      default: true\n    - name: bench6\n      cidr: fd00:10::/48\n      blockSize: 122\n",
	"    - networks: [bench]", "    - networks: [bench, bench6]",
	"    subnet: 192.168.10.0/24\n", "    subnet: 192.168.10.0/24\n    subnet6: \"fd00:ff:10::/64\"\n",
	"  - {name: a, host: host-1}\n  - {name: b, host: host-2}", "  - {name: a, host: host-1, annotations: {terrane.io/network: \"bench,bench6\"}}\n  - {name: b, host: host-2, annotations: {terrane.io/network: \"bench,bench6\"}}",
).Replace(tputScenario)

// Path kinds, in the order each round runs them.
const (
	KindRouted = "routed" // pod → pod across hosts, routed by Terrane
	KindHost   = "host"   // host → host over the same underlay
	KindVXLAN  = "vxlan"  // overlay pod → overlay pod across a VXLAN bridge
)

// ThroughputOptions configure RunThroughput.
type ThroughputOptions struct {
	LabOptions
	// Seconds is each iperf3 test's length; Rounds how many times each
	// path is measured (a b c a b c …).
	Seconds, Rounds int
	// EBPF runs the lab's agents with --ebpf: the routed path goes through
	// the eBPF fast path (internal/dataplane/ebpf).
	EBPF bool
	// BigTCP runs the lab's agents with --big-tcp (their default, here
	// asked for: a refusal fails): the GSO/GRO limits of the uplinks and
	// the pod veths go to what the uplink takes (512 KiB on the lab's
	// veths), for the routed and host paths alike. Without it the agents
	// run with --big-tcp=false.
	BigTCP bool
	// OverlayBigTCP, with BigTCP, gives the overlay's devices the same
	// limits. Off, the overlay keeps 64 KiB, as a VXLAN CNI runs it: IPv4
	// BIG TCP into a VXLAN device collapsed the overlay's throughput on
	// Linux 6.18 (docs/benchmarks.md).
	OverlayBigTCP bool
	// IPv6 measures every path over IPv6: dual-stack pods (the routed
	// path to the server pod's IPv6 address), the hosts' IPv6 addresses
	// on a dual-stack segment, and IPv6 addresses in the overlay.
	IPv6 bool
}

// ThroughputResult is the throughput benchmark's outcome.
type ThroughputResult struct {
	Machine Machine `json:"machine"`
	Seconds int     `json:"seconds"`
	Rounds  int     `json:"rounds"`
	Iperf3  string  `json:"iperf3"`
	// EBPF: the routed path went through the eBPF fast path.
	EBPF bool `json:"ebpf"`
	// BigTCP: the agents ran with --big-tcp; OverlayBigTCP: the overlay's
	// devices were given the same GSO/GRO limits (OverlayBigTCPDevices:
	// what each took).
	BigTCP bool `json:"big_tcp"`
	// Family is the address family every path was measured over.
	Family               int            `json:"family"`
	OverlayBigTCP        bool           `json:"overlay_big_tcp"`
	OverlayBigTCPDevices []DeviceBigTCP `json:"overlay_big_tcp_devices,omitempty"`
	// Paths are the sequential rounds' measurements.
	Paths []Path `json:"paths"`
	// Ratios of the paths' median rates.
	RoutedOverHost  float64 `json:"ratio_routed_over_host"`
	RoutedOverVXLAN float64 `json:"ratio_routed_over_vxlan"`
	// Paired ratios are the medians of each round's own ratio: the runs
	// of one round are seconds apart, so slow drifts of the machine's
	// load cancel in them (the goals use the ratios of the medians).
	PairedRoutedOverHost  float64 `json:"paired_ratio_routed_over_host"`
	PairedRoutedOverVXLAN float64 `json:"paired_ratio_routed_over_vxlan"`
	// Sequential: the same per-round ratios with the 95% bootstrap
	// confidence interval of their median.
	Sequential RatioPair `json:"sequential"`
	// Shared is the shared-CPU phase: the three paths at the same time.
	Shared SharedCPU `json:"shared"`
	// Goals: [0] and [1] judge the sequential ratios of the medians (as
	// before), [2] and [3] the shared-CPU medians.
	Goals []Goal `json:"goals"`
	// Notes: what the output should say about the setup (BIG TCP not taken).
	Notes []string `json:"notes,omitempty"`
}

// RatioPair is routed ÷ host and routed ÷ vxlan, per round.
type RatioPair struct {
	RoutedOverHost  RatioStats `json:"routed_over_host"`
	RoutedOverVXLAN RatioStats `json:"routed_over_vxlan"`
}

// SharedCPU is the shared-CPU phase: each round starts the three paths'
// iperf3 clients at once, every client pinned to ClientCPU and every
// server to ServerCPU, so each path gets an equal share of the same CPUs
// and the machine's noise hits all three alike. Its ratios are throughput
// per equal CPU share, what a CPU-bound node delivers.
type SharedCPU struct {
	ClientCPU int          `json:"client_cpu"`
	ServerCPU int          `json:"server_cpu"`
	Paths     []SharedPath `json:"paths"`
	RatioPair
	// HostForwarded is the two hosts' Ip: ForwDatagrams during the phase;
	// of the three paths only the routed one is forwarded by the hosts.
	HostForwarded int64 `json:"host_forwarded"`
}

// SharedPath is one path's runs in the shared-CPU phase.
type SharedPath struct {
	Kind       string     `json:"kind"`
	MedianGbps float64    `json:"median_gbps"`
	Runs       []IperfRun `json:"runs"`
}

// Path is one kind of path measured Rounds times.
type Path struct {
	Kind        string  `json:"kind"`
	Description string  `json:"description"`
	From        string  `json:"from"`
	To          string  `json:"to"`
	MTU         int     `json:"mtu"`
	MedianGbps  float64 `json:"median_gbps"`
	// HostForwarded is how many datagrams the two hosts' IP stacks
	// forwarded (Ip: ForwDatagrams) during this path's runs: near zero
	// when the eBPF fast path carries the routed path.
	HostForwarded int64      `json:"host_forwarded"`
	Runs          []IperfRun `json:"runs"`
	// ClientLink and ServerLink are the GSO/GRO limits of the client's and
	// the server's eth0 (gso_ipv4_max_size > 65536: IPv4 BIG TCP is on).
	ClientLink LinkGSO `json:"client_link"`
	ServerLink LinkGSO `json:"server_link"`
}

// Validate checks the sizes.
func (o *ThroughputOptions) Validate() error {
	var errs []error
	if o.Seconds < 1 || o.Seconds > 600 {
		errs = append(errs, fmt.Errorf("--seconds %d: want 1 to 600", o.Seconds))
	}
	if o.Rounds < 1 || o.Rounds > 100 {
		errs = append(errs, fmt.Errorf("--rounds %d: want 1 to 100", o.Rounds))
	}
	if o.OverlayBigTCP && !o.BigTCP {
		errs = append(errs, errors.New("--overlay-big-tcp: only with --big-tcp"))
	}
	return errors.Join(errs...)
}

// CheckIperf3 reports whether iperf3 can be run, and its version line.
func CheckIperf3() (string, error) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		return "", errors.New("the throughput benchmark needs iperf3: apt-get install iperf3")
	}
	out, err := exec.Command("iperf3", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("iperf3 --version: %w", err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line), nil
}

// tputPath is a path and where its iperf3 client and server run.
type tputPath struct {
	Path
	clientNetns, serverNetns string
	dst                      netip.Addr
}

// RunThroughput builds a two-host lab, adds a VXLAN overlay beside it and
// measures single-stream TCP throughput with iperf3 on the three paths, in
// rounds. The lab (overlay included) is removed before it returns.
func RunThroughput(ctx context.Context, o ThroughputOptions) (*ThroughputResult, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	version, err := CheckIperf3()
	if err != nil {
		return nil, err
	}
	lo := o.LabOptions
	routedDesc := "pod → pod across hosts, routed by Terrane (veth, /32 routes, no encapsulation)"
	if o.EBPF {
		lo.AgentArgs = append(append([]string(nil), lo.AgentArgs...), "--ebpf")
		routedDesc = "pod → pod across hosts, routed by Terrane with the eBPF fast path (redirect_peer / redirect_neigh; routes as fallback)"
	}
	if o.BigTCP {
		// Asked for: the agents refuse to start where the uplink refuses.
		lo.AgentArgs = append(append([]string(nil), lo.AgentArgs...), "--big-tcp")
	} else {
		lo.AgentArgs = append(append([]string(nil), lo.AgentArgs...), "--big-tcp=false")
	}
	clientCPU, serverCPU := pickCPUs(allowedCPUs())
	scenario := tputScenario
	if o.IPv6 {
		scenario = tputScenario6
	}
	st, down, err := upLab(ctx, lo, scenario)
	if down != nil {
		defer down()
	}
	if err != nil {
		return nil, err
	}
	n := o.names()
	h1, h2 := st.Scenario.Hosts[0], st.Scenario.Hosts[1]
	pa, _ := st.Pod("a")
	pb, _ := st.Pod("b")
	o.progress("building the VXLAN overlay (id %d, port %d) between %s and %s", vxlanID, vxlanPort, h1.Name, h2.Name)
	ovl, err := buildOverlay(ctx, n, [2]lab.Host{h1, h2}, o.IPv6)
	if err != nil {
		return nil, err
	}
	res := &ThroughputResult{Machine: thisMachine(), Seconds: o.Seconds, Rounds: o.Rounds, Iperf3: version, EBPF: o.EBPF,
		BigTCP: o.BigTCP, OverlayBigTCP: o.OverlayBigTCP, Family: 4}
	podDst, hostDst, ovlDst := pb.Addr(), h2.IP, overlayAddrs[1].Addr()
	if o.IPv6 {
		res.Family = 6
		hostDst, ovlDst = h2.IP6, overlayAddrs6[1].Addr()
		for _, a := range pb.Addrs {
			if a.Addr().Is6() {
				podDst = a.Addr()
			}
		}
		if !podDst.Is6() || !hostDst.Is6() {
			return nil, fmt.Errorf("--ipv6: pod b has %v and host %s %s: want IPv6 addresses", pb.Addrs, h2.Name, hostDst)
		}
	}
	if res.OverlayBigTCP {
		// The size the agent gave the uplink.
		up, err := readLinkGSO(n.Node(h1.Name), "eth0")
		if err != nil {
			return nil, fmt.Errorf("overlay BIG TCP: %w", err)
		}
		for i, h := range []lab.Host{h1, h2} {
			for _, dev := range [][2]string{{ovl[i], "eth0"}, {n.Node(h.Name), vxlanVeth}, {n.Node(h.Name), vxlanDev}, {n.Node(h.Name), vxlanBridge}} {
				d, err := setBigTCP(dev[0], dev[1], up.GSOIPv4MaxSize)
				if err != nil {
					return nil, fmt.Errorf("overlay BIG TCP: %w", err)
				}
				res.OverlayBigTCPDevices = append(res.OverlayBigTCPDevices, d)
			}
		}
		if note := bigTCPNote(res.OverlayBigTCPDevices, n.Prefix()); note != "" {
			res.Notes = append(res.Notes, note)
			o.progress("%s", note)
		}
	}
	paths := []*tputPath{
		{Path: Path{Kind: KindRouted, Description: routedDesc,
			From: pa.Name + "@" + h1.Name, To: podDst.String(), MTU: 1500}, clientNetns: pa.Netns, serverNetns: pb.Netns, dst: podDst},
		{Path: Path{Kind: KindHost, Description: "host → host over the same underlay",
			From: h1.Name, To: hostDst.String(), MTU: 1500}, clientNetns: n.Node(h1.Name), serverNetns: n.Node(h2.Name), dst: hostDst},
		{Path: Path{Kind: KindVXLAN, Description: fmt.Sprintf("overlay pod → overlay pod across a VXLAN bridge on the same hosts (id %d, MTU %d)", vxlanID, overlayMTU),
			From: ovl[0] + "@" + h1.Name, To: ovlDst.String(), MTU: overlayMTU}, clientNetns: ovl[0], serverNetns: ovl[1], dst: ovlDst},
	}
	for _, p := range paths {
		if p.ClientLink, err = readLinkGSO(p.clientNetns, "eth0"); err != nil {
			return nil, fmt.Errorf("%s path: %w", p.Kind, err)
		}
		if p.ServerLink, err = readLinkGSO(p.serverNetns, "eth0"); err != nil {
			return nil, fmt.Errorf("%s path: %w", p.Kind, err)
		}
	}
	if o.BigTCP {
		for _, p := range paths[:2] {
			if g := p.ClientLink.GSOIPv4MaxSize; g <= linux.DefaultGSOSize {
				note := fmt.Sprintf("BIG TCP asked for, but the %s path's client eth0 has gso_ipv4_max_size %d", p.Kind, g)
				res.Notes = append(res.Notes, note)
				o.progress("%s", note)
			}
		}
	}
	for _, p := range paths {
		srv, err := startIperfServer(ctx, p.serverNetns, iperfPort, -1)
		if err != nil {
			return nil, fmt.Errorf("%s path: %w", p.Kind, err)
		}
		defer srv.stop()
		pinned, err := startIperfServer(ctx, p.serverNetns, sharedPort, serverCPU)
		if err != nil {
			return nil, fmt.Errorf("%s path, shared-CPU server: %w", p.Kind, err)
		}
		defer pinned.stop()
	}
	shared := make([]SharedPath, len(paths))
	for i, p := range paths {
		shared[i].Kind = p.Kind
	}
	var sharedFwd int64
	meter := o.meter()
	meter.SetTotal(o.Rounds * (len(paths) + 1)) // each path alone, then all on shared CPUs, per round
	meter.Step("%d rounds of %d s on each path alone, then on shared CPUs", o.Rounds, o.Seconds)
	for r := range o.Rounds {
		for _, p := range paths {
			before := forwarded(ctx, n.Node(h1.Name)) + forwarded(ctx, n.Node(h2.Name))
			run, err := iperfClient(ctx, p.clientNetns, p.dst, iperfPort, o.Seconds, -1)
			p.HostForwarded += forwarded(ctx, n.Node(h1.Name)) + forwarded(ctx, n.Node(h2.Name)) - before
			if err != nil {
				return nil, fmt.Errorf("%s path (%s → %s), round %d: %w", p.Kind, p.From, p.To, r+1, err)
			}
			p.Runs = append(p.Runs, run)
			o.progress("round %d/%d %-6s %6.2f Gbit/s (%d retransmits)", r+1, o.Rounds, p.Kind, run.Gbps, run.Retransmits)
			meter.Add(1)
		}
		before := forwarded(ctx, n.Node(h1.Name)) + forwarded(ctx, n.Node(h2.Name))
		runs, err := sharedRound(ctx, paths, o.Seconds, clientCPU)
		sharedFwd += forwarded(ctx, n.Node(h1.Name)) + forwarded(ctx, n.Node(h2.Name)) - before
		if err != nil {
			return nil, fmt.Errorf("shared-CPU round %d: %w", r+1, err)
		}
		for i := range paths {
			shared[i].Runs = append(shared[i].Runs, runs[i])
		}
		o.progress("round %d/%d shared CPU (clients on CPU %d, servers on CPU %d): routed %.2f  host %.2f  vxlan %.2f Gbit/s",
			r+1, o.Rounds, clientCPU, serverCPU, runs[0].Gbps, runs[1].Gbps, runs[2].Gbps)
		meter.Add(1)
	}
	med := map[string]float64{}
	for _, p := range paths {
		p.MedianGbps = median(gbps(p.Runs))
		med[p.Kind] = p.MedianGbps
		res.Paths = append(res.Paths, p.Path)
	}
	res.Sequential = roundRatios(paths[0].Runs, paths[1].Runs, paths[2].Runs)
	res.PairedRoutedOverHost, res.PairedRoutedOverVXLAN = res.Sequential.RoutedOverHost.Median, res.Sequential.RoutedOverVXLAN.Median
	res.RoutedOverHost = ratio(med[KindRouted], med[KindHost])
	res.RoutedOverVXLAN = ratio(med[KindRouted], med[KindVXLAN])
	for i := range shared {
		shared[i].MedianGbps = median(gbps(shared[i].Runs))
	}
	res.Shared = SharedCPU{ClientCPU: clientCPU, ServerCPU: serverCPU, Paths: shared, HostForwarded: sharedFwd,
		RatioPair: roundRatios(shared[0].Runs, shared[1].Runs, shared[2].Runs)}
	res.Goals = throughputGoals(res)
	return res, nil
}

// throughputGoals checks the goals routed ≥ 0.95× host and ≥ 1.03× VXLAN
// on both measures: the sequential rounds' ratios of the medians, then the
// shared-CPU medians with their confidence intervals.
func throughputGoals(r *ThroughputResult) []Goal {
	return []Goal{
		atLeast("routed/host sequential (ratio of medians)", r.RoutedOverHost, 0.95),
		atLeast("routed/VXLAN sequential (ratio of medians)", r.RoutedOverVXLAN, 1.03),
		atLeastCI("routed/host shared CPU (median, 95% CI)", r.Shared.RoutedOverHost, 0.95),
		atLeastCI("routed/VXLAN shared CPU (median, 95% CI)", r.Shared.RoutedOverVXLAN, 1.03),
	}
}

// roundRatios is each round's routed ÷ host and routed ÷ vxlan.
func roundRatios(routed, host, vxlan []IperfRun) RatioPair {
	var perHost, perVXLAN []float64
	for r := range routed {
		perHost = append(perHost, ratio(routed[r].Gbps, host[r].Gbps))
		perVXLAN = append(perVXLAN, ratio(routed[r].Gbps, vxlan[r].Gbps))
	}
	return RatioPair{RoutedOverHost: ratioStats(perHost), RoutedOverVXLAN: ratioStats(perVXLAN)}
}

func gbps(runs []IperfRun) []float64 {
	var g []float64
	for _, r := range runs {
		g = append(g, r.Gbps)
	}
	return g
}

// sharedRound runs the paths' iperf3 clients at the same time against the
// pinned servers, each client pinned to cpu; runs[i] is paths[i]'s.
func sharedRound(ctx context.Context, paths []*tputPath, seconds, cpu int) ([]IperfRun, error) {
	runs := make([]IperfRun, len(paths))
	errs := make([]error, len(paths))
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Go(func() {
			runs[i], errs[i] = iperfClient(ctx, p.clientNetns, p.dst, sharedPort, seconds, cpu)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("%s path (%s → %s): %w", p.Kind, p.From, p.To, errs[i])
			}
		})
	}
	wg.Wait()
	return runs, errors.Join(errs...)
}

// allowedCPUs lists the CPUs this process may run on (nil when unknown).
func allowedCPUs() []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil
	}
	var cpus []int
	for c := 0; c < 8*int(unsafe.Sizeof(set)) && len(cpus) < set.Count(); c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

// pickCPUs chooses the shared-CPU phase's CPUs among the allowed ones:
// the first for every iperf3 client, the second for every server; both
// the same when only one is allowed (CPU 0 when the list is unknown).
func pickCPUs(allowed []int) (client, server int) {
	switch len(allowed) {
	case 0:
		return 0, 0
	case 1:
		return allowed[0], allowed[0]
	}
	return allowed[0], allowed[1]
}

// buildOverlay makes, in each host's namespace, a VXLAN device to the
// other host on a bridge, and a veth from the bridge to an extra overlay
// pod namespace (named by the lab's rules, so lab down removes it). It
// returns the two overlay namespaces.
func buildOverlay(ctx context.Context, n lab.Names, hosts [2]lab.Host, v6 bool) ([2]string, error) {
	var out [2]string
	for i, h := range hosts {
		out[i] = n.Node("overlay-" + strings.TrimPrefix(h.Name, "host-"))
	}
	if err := lab.IPBatch(ctx, "", []string{"netns add " + out[0], "netns add " + out[1]}); err != nil {
		return out, err
	}
	for i, h := range hosts {
		other := hosts[1-i]
		if err := lab.IPBatch(ctx, n.Node(h.Name), []string{
			fmt.Sprintf("link add %s type vxlan id %d dstport %d local %s remote %s dev eth0", vxlanDev, vxlanID, vxlanPort, h.IP, other.IP),
			"link add " + vxlanBridge + " type bridge",
			fmt.Sprintf("link set %s master %s up", vxlanDev, vxlanBridge),
			fmt.Sprintf("link add %s mtu %d type veth peer name eth0 mtu %d netns %s", vxlanVeth, overlayMTU, overlayMTU, out[i]),
			fmt.Sprintf("link set %s master %s up", vxlanVeth, vxlanBridge),
			"link set " + vxlanBridge + " up",
		}); err != nil {
			return out, fmt.Errorf("overlay on %s: %w", h.Name, err)
		}
		cmds := []string{
			"link set lo up",
			fmt.Sprintf("addr add %s dev eth0", overlayAddrs[i]),
			"link set eth0 up",
		}
		if v6 {
			cmds = append(cmds, fmt.Sprintf("addr add %s dev eth0 nodad", overlayAddrs6[i]))
		}
		if err := lab.IPBatch(ctx, out[i], cmds); err != nil {
			return out, fmt.Errorf("overlay pod on %s: %w", h.Name, err)
		}
	}
	return out, nil
}

// iperfServer is an `iperf3 -s` inside a namespace.
type iperfServer struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startIperfServer starts iperf3 -s on port in netns and waits until it
// listens; cpu ≥ 0 pins it there (iperf3 -A), which is then checked.
func startIperfServer(ctx context.Context, netns string, port, cpu int) (*iperfServer, error) {
	args := []string{"netns", "exec", netns, "iperf3", "-s", "-p", strconv.Itoa(port), "--forceflush"}
	if cpu >= 0 {
		args = append(args, "-A", strconv.Itoa(cpu))
	}
	cmd := exec.Command("ip", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start iperf3 -s in %s: %w", netns, err)
	}
	s := &iperfServer{cmd: cmd, done: make(chan struct{})}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), "Server listening") {
				close(listening)
				signalled = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(s.done)
	}()
	select {
	case <-listening:
	case <-s.done:
		return nil, fmt.Errorf("iperf3 -s in %s exited: %s", netns, strings.TrimSpace(stderr.String()))
	case <-time.After(10 * time.Second):
		s.stop()
		return nil, fmt.Errorf("iperf3 -s in %s: not listening after 10 s", netns)
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
	if cpu >= 0 {
		// ip netns exec execs iperf3: the process is iperf3 itself.
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(cmd.Process.Pid, &set); err != nil || set.Count() != 1 || !set.IsSet(cpu) {
			s.stop()
			return nil, fmt.Errorf("iperf3 -s -A %d in %s: not pinned to CPU %d (%d CPUs allowed, %v)", cpu, netns, cpu, set.Count(), err)
		}
	}
	return s, nil
}

func (s *iperfServer) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// iperfClient runs one single-stream TCP test from netns to dst:port;
// cpu ≥ 0 pins the client there (iperf3 -A).
func iperfClient(ctx context.Context, netns string, dst netip.Addr, port, seconds, cpu int) (IperfRun, error) {
	args := []string{"netns", "exec", netns, "iperf3", "-c", dst.String(), "-p", strconv.Itoa(port),
		"-t", strconv.Itoa(seconds), "-J", "--connect-timeout", "5000"}
	if cpu >= 0 {
		args = append(args, "-A", strconv.Itoa(cpu))
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	run, err := ParseIperf(stdout.Bytes())
	if err != nil {
		if runErr != nil {
			return IperfRun{}, fmt.Errorf("%w (iperf3 %v: %s)", err, runErr, strings.TrimSpace(stderr.String()))
		}
		return IperfRun{}, err
	}
	return run, runErr
}

// forwarded is Ip: ForwDatagrams of namespace netns (0 when unreadable).
func forwarded(ctx context.Context, netns string) int64 {
	c, _ := lab.NetCounters(ctx, netns)
	return c["Ip:ForwDatagrams"]
}
