package labbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/terrane-net/terrane/internal/lab"
)

// BurstOptions configure RunBurst.
type BurstOptions struct {
	LabOptions
	// UpstreamBin holds ptp and host-local (EnsureUpstreamPlugins).
	UpstreamBin string
	// Pods is the burst's size (the kubelet's default maxPods: 110).
	Pods int
	// Rounds is how many bursts each plugin runs, alternating.
	Rounds int
}

// DefaultBurstPods is the Kubernetes per-node default maximum of pods.
const DefaultBurstPods = 110

// Validate checks the sizes.
func (o *BurstOptions) Validate() error {
	var errs []error
	if o.Pods < 1 || o.Pods > 1000 {
		errs = append(errs, fmt.Errorf("--pods %d: want 1 to 1000", o.Pods))
	}
	if o.Rounds < 1 {
		errs = append(errs, fmt.Errorf("--rounds %d: want at least 1", o.Rounds))
	}
	return errors.Join(errs...)
}

// BurstResult is the burst benchmark's outcome: per plugin, the medians
// over its rounds; Ratio is terrane ÷ peer of the time to all reachable.
type BurstResult struct {
	Machine Machine     `json:"machine"`
	Pods    int         `json:"pods"`
	Rounds  int         `json:"rounds"`
	Terrane BurstPlugin `json:"terrane"`
	Peer    BurstPlugin `json:"peer"`
	Ratio   float64     `json:"ratio"`
	// CPURatio is terrane ÷ peer of the CPU per ADD (plugin and agent).
	CPURatio float64 `json:"cpu_ratio"`
	Goals    []Goal  `json:"goals"`
}

// BurstPlugin is one plugin's bursts.
type BurstPlugin struct {
	Plugin string `json:"plugin"`
	// SecondsToAllReachable is the median over the rounds of the time from
	// the burst's start until the last pod answered from its node.
	SecondsToAllReachable float64 `json:"seconds_to_all_reachable"`
	// SecondsToAllAdded is the same until the last ADD returned.
	SecondsToAllAdded float64 `json:"seconds_to_all_added"`
	// Rounds are each round's time to all reachable.
	Rounds []float64 `json:"rounds_seconds_to_all_reachable"`
	// Add is every ADD's latency, all rounds pooled.
	Add Latency `json:"add"`
	// PluginCPUPerAdd is the CPU time (user and system, milliseconds) the
	// plugin processes spent per ADD, median over the rounds: every process
	// the ADDs ran and waited for (ptp counts its host-local). The agent's
	// (terrane only) is AgentCPUPerAdd, over the same span: the burst's
	// start until its last pod answered. Unlike the times, these hardly move
	// with what else the machine runs.
	PluginCPUPerAdd float64 `json:"plugin_cpu_ms_per_add"`
	AgentCPUPerAdd  float64 `json:"agent_cpu_ms_per_add,omitempty"`
}

// RunBurst builds a one-host lab and, on that host, creates Pods pods at
// once through libcni — every ADD in flight together, as a kubelet's pod
// workers start a node's pods — then waits until each pod answers from the
// node's namespace; the same with ptp + host-local; rounds alternate which
// goes first. Pods are deleted between rounds (untimed).
func RunBurst(ctx context.Context, o BurstOptions) (*BurstResult, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := checkUpstream(o.UpstreamBin); err != nil {
		return nil, err
	}
	st, down, err := upLab(ctx, o.LabOptions, cniScenario)
	if down != nil {
		defer down()
	}
	if err != nil {
		return nil, err
	}
	n := o.names()
	terrane, upstream, err := pluginPair(n, o.UpstreamBin)
	if err != nil {
		return nil, err
	}
	b := &cniBench{n: n, hostNetns: lab.NetnsPath(n.Node(cniHost)), progress: o.progress, meter: o.meter()}
	for _, p := range st.Processes {
		if p.Role == "agent" && p.Node == cniHost {
			terrane.agentPID = p.PID
		}
	}
	o.progress("creating %d pod namespaces", o.Pods)
	if err := b.makeNetns(ctx, o.Pods); err != nil {
		return nil, err
	}
	b.meter.SetTotal(2 + 2*o.Rounds) // the warm-ups, then each round of each plugin
	b.meter.Step("warm-up: %d pods through each plugin, untimed", warmupPods)
	for _, p := range []*plugin{terrane, upstream} {
		if _, _, err := b.round(ctx, p, "warmup", warmupPods, 1, nil); err != nil {
			return nil, err
		}
		b.meter.Add(1)
	}
	b.meter.Step("%d rounds of %d pods at once through each plugin, taking turns", o.Rounds, o.Pods)
	type acc struct {
		reach, added   []float64
		adds           []time.Duration
		plugCPU, agCPU []float64
	}
	accs := map[*plugin]*acc{terrane: {}, upstream: {}}
	for r := range o.Rounds {
		order := []*plugin{terrane, upstream}
		if r%2 == 1 {
			order = []*plugin{upstream, terrane}
		}
		for _, p := range order {
			reach, added, adds, cpu, err := b.burst(ctx, p, fmt.Sprintf("r%d", r), o.Pods)
			if err != nil {
				return nil, err
			}
			a := accs[p]
			a.reach, a.added, a.adds = append(a.reach, reach.Seconds()), append(a.added, added.Seconds()), append(a.adds, adds...)
			a.plugCPU, a.agCPU = append(a.plugCPU, cpu.plugin), append(a.agCPU, cpu.agent)
			o.progress("round %d/%d %s: %d pods reachable in %.2f s (all ADDs returned in %.2f s, ADD p99 %.0f ms; CPU per ADD %.2f ms plugin, %.2f ms agent)",
				r+1, o.Rounds, p.name, o.Pods, reach.Seconds(), added.Seconds(), summarise(adds).P99, cpu.plugin, cpu.agent)
			b.meter.Add(1)
		}
	}
	sum := func(p *plugin, name string) BurstPlugin {
		a := accs[p]
		return BurstPlugin{Plugin: name, SecondsToAllReachable: median(a.reach), SecondsToAllAdded: median(a.added), Rounds: a.reach, Add: summarise(a.adds),
			PluginCPUPerAdd: median(a.plugCPU), AgentCPUPerAdd: median(a.agCPU)}
	}
	res := &BurstResult{Machine: thisMachine(), Pods: o.Pods, Rounds: o.Rounds,
		Terrane: sum(terrane, "terrane-cni, agent and server ("+terraneNet+")"),
		Peer:    sum(upstream, "ptp + host-local "+UpstreamVersion)}
	res.Ratio = ratio(res.Terrane.SecondsToAllReachable, res.Peer.SecondsToAllReachable)
	res.CPURatio = ratio(res.Terrane.PluginCPUPerAdd+res.Terrane.AgentCPUPerAdd, res.Peer.PluginCPUPerAdd+res.Peer.AgentCPUPerAdd)
	inTime := atMost(fmt.Sprintf("%d pods reachable", o.Pods), res.Terrane.SecondsToAllReachable, 5)
	inTime.Unit = "s"
	res.Goals = []Goal{inTime, atMost("time to all reachable, terrane/peer", res.Ratio, 0.5)}
	return res, nil
}

// burstCPU is a burst's CPU per ADD, in milliseconds.
type burstCPU struct{ plugin, agent float64 }

// burst adds size pods with p all at once and waits until each answers
// from the host's namespace; then deletes them. It returns the time from
// the start until the last pod answered and until the last ADD returned,
// every ADD's latency, and the CPU the plugin processes (and p's agent)
// spent per ADD meanwhile.
func (b *cniBench) burst(ctx context.Context, p *plugin, tag string, size int) (reach, added time.Duration, adds []time.Duration, cpu burstCPU, err error) {
	pods := make([]benchPod, size)
	for i := range pods {
		pods[i] = benchPod{netns: b.netns[i], namespace: "default", name: fmt.Sprintf("burst-%03d", i)}
		pods[i].rt = runtimeConf(fmt.Sprintf("burst-%s-%s-%03d", p.tag, tag, i), lab.NetnsPath(b.netns[i]), pods[i].namespace, pods[i].name, newUID())
	}
	defer func() {
		_, derr := b.each(context.WithoutCancel(ctx), p.hostNetns, pods, size, func(pod *benchPod) error { return p.cni.DelNetworkList(ctx, p.list, pod.rt) })
		if err == nil && derr != nil {
			err = fmt.Errorf("%s DEL: %w", p.name, derr)
		}
	}()
	adds = make([]time.Duration, size)
	addEnd := make([]time.Duration, size)  // from the start until the ADD returned
	reached := make([]time.Duration, size) // from the start until the pod answered
	errs := make([]error, size)
	var wg sync.WaitGroup
	plug0, ag0 := childrenCPU(), processCPU(p.agentPID)
	start := time.Now()
	for i := range pods {
		pod := &pods[i]
		wg.Go(func() {
			errs[i] = ns.WithNetNSPath(p.hostNetns, func(ns.NetNS) error {
				t := time.Now()
				res, err := p.cni.AddNetworkList(ctx, p.list, pod.rt)
				adds[i], addEnd[i] = time.Since(t), time.Since(start)
				if err != nil {
					return fmt.Errorf("pod %s ADD: %w", pod.rt.ContainerID, err)
				}
				if pod.addr, err = addrOf(res); err != nil {
					return fmt.Errorf("pod %s: %w", pod.rt.ContainerID, err)
				}
				return nil
			})
			if errs[i] != nil {
				return
			}
			errs[i] = ns.WithNetNSPath(p.hostNetns, func(ns.NetNS) error { return answers(ctx, pod.addr) })
			reached[i] = time.Since(start)
		})
	}
	wg.Wait()
	plug1, ag1 := childrenCPU(), processCPU(p.agentPID)
	if err := errors.Join(errs...); err != nil {
		return 0, 0, nil, burstCPU{}, fmt.Errorf("%s burst: %w", p.name, err)
	}
	cpu = burstCPU{plugin: ms(plug1-plug0) / float64(size), agent: ms(ag1-ag0) / float64(size)}
	return slices.Max(reached), slices.Max(addEnd), adds, cpu, nil
}

// childrenCPU is the CPU time of this process's children it has waited
// for, and of theirs: the plugin processes libcni ran (a plugin's own
// children, ptp's host-local, count once ptp waited for them).
func childrenCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processCPU is pid's CPU time so far (0 for pid 0 or when it cannot be
// read): utime and stime of /proc/PID/stat, in the kernel's USER_HZ
// (100 a second on Linux).
func processCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: count from after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// burstReachTimeout bounds the wait for one pod to answer.
const burstReachTimeout = 30 * time.Second

// answers waits until addr answers from this namespace: a UDP datagram to a
// port nothing listens on comes back as ICMP port unreachable
// (ECONNREFUSED on the connected socket) once both ways are routed.
func answers(ctx context.Context, addr netip.Addr) error {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 9)))
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(burstReachTimeout)
	buf := make([]byte, 16)
	for wait := 2 * time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer within %s", addr, burstReachTimeout)
		}
		if _, err := conn.Write([]byte("terrane")); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
			return err
		} else if err != nil {
			return nil // the refusal of an earlier datagram
		}
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		if _, err := conn.Read(buf); errors.Is(err, syscall.ECONNREFUSED) {
			return nil
		}
	}
}
