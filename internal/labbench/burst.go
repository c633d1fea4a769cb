package labbench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
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
	Goals   []Goal      `json:"goals"`
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
	_, down, err := upLab(ctx, o.LabOptions, cniScenario)
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
		reach, added []float64
		adds         []time.Duration
	}
	accs := map[*plugin]*acc{terrane: {}, upstream: {}}
	for r := range o.Rounds {
		order := []*plugin{terrane, upstream}
		if r%2 == 1 {
			order = []*plugin{upstream, terrane}
		}
		for _, p := range order {
			reach, added, adds, err := b.burst(ctx, p, fmt.Sprintf("r%d", r), o.Pods)
			if err != nil {
				return nil, err
			}
			a := accs[p]
			a.reach, a.added, a.adds = append(a.reach, reach.Seconds()), append(a.added, added.Seconds()), append(a.adds, adds...)
			o.progress("round %d/%d %s: %d pods reachable in %.2f s (all ADDs returned in %.2f s, ADD p99 %.0f ms)",
				r+1, o.Rounds, p.name, o.Pods, reach.Seconds(), added.Seconds(), summarise(adds).P99)
			b.meter.Add(1)
		}
	}
	sum := func(p *plugin, name string) BurstPlugin {
		a := accs[p]
		return BurstPlugin{Plugin: name, SecondsToAllReachable: median(a.reach), SecondsToAllAdded: median(a.added), Rounds: a.reach, Add: summarise(a.adds)}
	}
	res := &BurstResult{Machine: thisMachine(), Pods: o.Pods, Rounds: o.Rounds,
		Terrane: sum(terrane, "terrane-cni, agent and server ("+terraneNet+")"),
		Peer:    sum(upstream, "ptp + host-local "+UpstreamVersion)}
	res.Ratio = ratio(res.Terrane.SecondsToAllReachable, res.Peer.SecondsToAllReachable)
	inTime := atMost(fmt.Sprintf("%d pods reachable", o.Pods), res.Terrane.SecondsToAllReachable, 5)
	inTime.Unit = "s"
	res.Goals = []Goal{inTime, atMost("time to all reachable, terrane/peer", res.Ratio, 0.5)}
	return res, nil
}

// burst adds size pods with p all at once and waits until each answers
// from the host's namespace; then deletes them. It returns the time from
// the start until the last pod answered and until the last ADD returned,
// and every ADD's latency.
func (b *cniBench) burst(ctx context.Context, p *plugin, tag string, size int) (reach, added time.Duration, adds []time.Duration, err error) {
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
	if err := errors.Join(errs...); err != nil {
		return 0, 0, nil, fmt.Errorf("%s burst: %w", p.name, err)
	}
	return slices.Max(reached), slices.Max(addEnd), adds, nil
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
