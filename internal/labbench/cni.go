package labbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/terrane-net/terrane/internal/lab"
)

// cniScenario is the CNI benchmark's lab: one host, its agent and the
// server, no pods. /26 blocks are the usual size (Calico's default); the
// agent claims ahead as it does in production.
const cniScenario = `
name: bench-cni
description: one host; the benchmark's pods come and go through libcni
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
`

const (
	cniHost       = "host-1"
	terraneNet    = "10.10.0.0/16, /26 blocks"
	upstreamRange = "10.99.0.0/16"
	// minBatch is the fewest pods a round adds before deleting them.
	minBatch = 20
	// warmupPods go through each plugin once, untimed, before the rounds.
	warmupPods = 5
	// startupRuns is how many times each plugin binary is started alone.
	startupRuns = 50
)

// CNIOptions configure RunCNI.
type CNIOptions struct {
	LabOptions
	// UpstreamBin holds ptp and host-local (EnsureUpstreamPlugins).
	UpstreamBin string
	// N is the number of timed ADDs (and DELs) per plugin and concurrency.
	N int
	// Concurrency lists the numbers of ADDs (DELs) in flight at once.
	Concurrency []int
	// Policy adds the configuration terrane+policy: the lab runs a real
	// kube-apiserver and a second host whose agent enforces NetworkPolicy
	// (cnipolicy.go).
	Policy bool
	// KubeBins holds etcd, kube-apiserver and kubectl for Policy (default:
	// the lab's cache; missing ones are built).
	KubeBins string
}

// CNIResult is the CNI benchmark's outcome. Ratios are terrane ÷
// ptp+host-local: below 1 Terrane is faster.
type CNIResult struct {
	Machine  Machine `json:"machine"`
	N        int     `json:"n"`
	Terrane  string  `json:"terrane"`
	Upstream string  `json:"upstream"`
	// Policy is the terrane+policy configuration and how its enforcement
	// was verified (CNIOptions.Policy); nil without it.
	Policy *CNIPolicy `json:"policy,omitempty"`
	Runs   []CNIRun   `json:"runs"`
	// Startup is each plugin binary's start-up alone: CNI VERSION through
	// libcni, one at a time (a ptp ADD starts ptp and host-local).
	Startup map[string]Latency `json:"startup_version_exec"`
	Goals   []Goal             `json:"goals"`
}

// CNIRun is one concurrency level.
type CNIRun struct {
	Concurrency int `json:"concurrency"`
	// Rounds took the plugins in turn (the first one rotating); each round
	// added a batch of pods with one plugin, then deleted them, then the
	// same with the next.
	Rounds   int           `json:"rounds"`
	Terrane  PluginLatency `json:"terrane"`
	Upstream PluginLatency `json:"ptp_host_local"`
	Ratio    CNIRatios     `json:"ratio_terrane_over_ptp"`
	// TerranePolicy and PolicyRatio: with CNIOptions.Policy only.
	TerranePolicy *PluginLatency `json:"terrane_policy,omitempty"`
	PolicyRatio   *PolicyRatios  `json:"ratio_policy,omitempty"`
}

// PolicyRatios are terrane+policy ÷ terrane (what enforcing policy adds to
// an ADD) and terrane+policy ÷ ptp+host-local, of the same quantile.
type PolicyRatios struct {
	OverTerrane  CNIRatios `json:"terrane_policy_over_terrane"`
	OverUpstream CNIRatios `json:"terrane_policy_over_ptp"`
}

// PluginLatency is one plugin's ADD and DEL latency as libcni saw it.
type PluginLatency struct {
	Add Latency `json:"add"`
	Del Latency `json:"del"`
}

// CNIRatios are terrane ÷ ptp+host-local of the same quantile.
type CNIRatios struct {
	AddP50 float64 `json:"add_p50"`
	AddP99 float64 `json:"add_p99"`
	DelP50 float64 `json:"del_p50"`
	DelP99 float64 `json:"del_p99"`
}

// Validate checks the sizes (not the binaries).
func (o *CNIOptions) Validate() error {
	var errs []error
	if o.N < 1 {
		errs = append(errs, fmt.Errorf("--n %d: want at least 1", o.N))
	}
	if len(o.Concurrency) == 0 {
		errs = append(errs, errors.New("--concurrency: want at least one level"))
	}
	for _, c := range o.Concurrency {
		if c < 1 || c > 256 {
			errs = append(errs, fmt.Errorf("--concurrency %d: want 1 to 256", c))
		}
	}
	if o.KubeBins != "" && !o.Policy {
		errs = append(errs, fmt.Errorf("--kube-bins %s: only with --policy (the other configurations need no Kubernetes)", o.KubeBins))
	}
	return errors.Join(errs...)
}

// plugin is one configuration of the comparison.
type plugin struct {
	name string
	// tag names its pods (container IDs, Pod objects).
	tag  string
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
	// hostNetns is the host namespace the plugin is started in.
	hostNetns string
	// agentPID, when set, is the node agent the plugin calls, whose CPU
	// the burst benchmark counts with the plugin's.
	agentPID int
	// kube, when set, makes each round a kubelet's: the Pod objects exist
	// before the ADDs, the ADDs carry their UIDs, the node's enforcement
	// is verified after them and the objects are deleted after the DELs.
	kube *podObjects
	// probe, when set, runs after the warm-up's ADDs (untimed).
	probe func(ctx context.Context, pods []benchPod) error
}

// benchPod is one pod of a round: its CNI runtime configuration and, after
// the ADD, its address.
type benchPod struct {
	rt    *libcni.RuntimeConf
	netns string // the namespace's name
	// namespace and name are the Pod's (K8S_POD_NAMESPACE, K8S_POD_NAME).
	namespace, name string
	addr            netip.Addr
}

// RunCNI builds a one-host lab, then times CNI ADD and DEL through libcni
// for terrane-cni and for ptp + host-local on that host, alternating the
// plugins round by round, at each concurrency level. With o.Policy the lab
// runs on a kube-apiserver with a second host whose agent enforces policy,
// and terrane+policy takes its turn in every round (cnipolicy.go). The lab
// is removed before it returns.
func RunCNI(ctx context.Context, o CNIOptions) (res *CNIResult, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if err := checkUpstream(o.UpstreamBin); err != nil {
		return nil, err
	}
	scenario, with := cniScenario, func(*lab.UpOptions) {}
	if o.Policy {
		scenario, with = cniPolicyScenario, withPolicyHost(o.KubeBins)
	}
	st, down, err := upLabWith(ctx, o.LabOptions, scenario, with)
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
	plugins := []*plugin{terrane, upstream}
	var pol *policyBench
	if o.Policy {
		// The view stops with this context, before the lab goes.
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if pol, err = newPolicyBench(pctx, st, n, terrane); err != nil {
			return nil, err
		}
		plugins = []*plugin{terrane, pol.plugin, upstream}
	}
	b := &cniBench{n: n, progress: o.progress, meter: o.meter()}

	// The pods' namespaces, made once before any timing and reused by
	// every round (each DEL leaves them empty).
	batch := min(max(slices.Max(o.Concurrency), minBatch), max(o.N, warmupPods))
	o.progress("creating %d pod namespaces (%s…)", batch, n.Pod("b000"))
	if err := b.makeNetns(ctx, batch); err != nil {
		return nil, err
	}

	res = &CNIResult{Machine: thisMachine(), N: o.N, Terrane: "terrane-cni, agent and server of lab " + st.Name + " (" + terraneNet + ")",
		Upstream: "ptp + host-local " + UpstreamVersion + " (" + upstreamRange + ", dataDir in the lab directory)"}
	if pol != nil {
		res.Terrane = "terrane-cni on " + cniHost + ", its agent without policy; agents and server of lab " + st.Name + " (" + terraneNet + ", Kubernetes store)"
		res.Policy = &pol.res
	}
	// The units: each warm-up, the start-up runs, each round of each
	// plugin at each concurrency.
	units := len(plugins) + 1
	for _, c := range o.Concurrency {
		units += len(plugins) * ((o.N + max(c, minBatch) - 1) / max(c, minBatch))
	}
	b.meter.SetTotal(units)
	b.meter.Step("warm-up: %d pods through each plugin, untimed", warmupPods)
	for _, p := range plugins {
		if _, _, err := b.round(ctx, p, "warmup", warmupPods, 1, p.probe); err != nil {
			return nil, err
		}
		b.meter.Add(1)
	}
	b.meter.Step("start-up: CNI VERSION of terrane-cni, ptp and host-local, %d each, alternating", startupRuns)
	if res.Startup, err = b.startup(ctx, terrane, upstream); err != nil {
		return nil, err
	}
	b.meter.Add(1)
	for _, c := range o.Concurrency {
		run, err := b.run(ctx, plugins, o.N, c, max(c, minBatch))
		if err != nil {
			return nil, err
		}
		res.Runs = append(res.Runs, run)
		res.Goals = append(res.Goals,
			atMost(fmt.Sprintf("ADD p50 terrane/ptp at concurrency %d", c), run.Ratio.AddP50, 1.0),
			atMost(fmt.Sprintf("ADD p99 terrane/ptp at concurrency %d", c), run.Ratio.AddP99, 1.2))
	}
	return res, nil
}

// checkUpstream says what the upstream plugin directory lacks.
func checkUpstream(dir string) error {
	if missing := missingUpstream(dir); len(missing) > 0 {
		return fmt.Errorf("upstream plugin directory %q lacks %s (EnsureUpstreamPlugins builds them)", dir, strings.Join(missing, ", "))
	}
	return nil
}

// pluginPair is the comparison's two sides on the bench host: terrane-cni
// as its agent installed it, and ptp + host-local.
func pluginPair(n lab.Names, upstreamBin string) (terrane, upstream *plugin, err error) {
	if terrane, err = terranePlugin(n, cniHost, "terrane", "trn"); err != nil {
		return nil, nil, err
	}
	if upstream, err = upstreamPlugin(n, upstreamBin); err != nil {
		return nil, nil, err
	}
	return terrane, upstream, nil
}

// terranePlugin is the conflist a host's agent installed.
func terranePlugin(n lab.Names, host, name, tag string) (*plugin, error) {
	files, err := libcni.ConfFiles(n.CNIConfDir(host), []string{".conflist"})
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no CNI conflist in %s (%v)", n.CNIConfDir(host), err)
	}
	list, err := libcni.ConfListFromFile(files[0])
	if err != nil {
		return nil, err
	}
	return &plugin{name: name, tag: tag, cni: libcni.NewCNIConfigWithCacheDir([]string{n.CNIBinDir(host)}, n.CNICache(), nil), list: list,
		hostNetns: lab.NetnsPath(n.Node(host))}, nil
}

// upstreamPlugin is ptp with host-local IPAM, as their README shows it,
// with host-local's files in the lab directory.
func upstreamPlugin(n lab.Names, bin string) (*plugin, error) {
	dataDir := filepath.Join(n.Dir, "host-local")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	conf := map[string]any{
		"cniVersion": "1.1.0",
		"name":       "bench-ptp",
		"plugins": []any{map[string]any{
			"type":   "ptp",
			"ipMasq": false,
			"mtu":    1500,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": upstreamRange}}},
				"dataDir": dataDir,
			},
		}},
	}
	b, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("ptp conflist: %w", err)
	}
	return &plugin{name: "ptp+host-local", tag: "ptp", cni: libcni.NewCNIConfigWithCacheDir([]string{bin}, filepath.Join(n.Dir, "cni-cache-upstream"), nil), list: list,
		hostNetns: lab.NetnsPath(n.Node(cniHost))}, nil
}

type cniBench struct {
	n lab.Names
	// hostNetns is where inHost runs (the churn benchmark's one host).
	hostNetns string
	netns     []string
	progress  func(string, ...any)
	meter     lab.Meter // never nil
}

func (b *cniBench) makeNetns(ctx context.Context, count int) error {
	var cmds []string
	for i := range count {
		name := b.n.Pod(fmt.Sprintf("b%03d", i))
		b.netns = append(b.netns, name)
		cmds = append(cmds, "netns add "+name)
	}
	return lab.IPBatch(ctx, "", cmds)
}

// run times n ADDs and DELs of each plugin at concurrency c, in rounds of
// batch pods; the plugin that goes first rotates round by round.
func (b *cniBench) run(ctx context.Context, plugins []*plugin, n, c, batch int) (CNIRun, error) {
	samples := make([][2][]time.Duration, len(plugins))
	rounds := (n + batch - 1) / batch
	b.meter.Step("concurrency %d: %d round(s) of up to %d pods per plugin, taking turns", c, rounds, batch)
	for r := range rounds {
		size := min(batch, n-r*batch)
		line := fmt.Sprintf("  c=%d round %d/%d (%d pods):", c, r+1, rounds, size)
		for k := range plugins {
			i := (k + r) % len(plugins)
			p := plugins[i]
			add, del, err := b.round(ctx, p, fmt.Sprintf("c%dr%d", c, r), size, c, nil)
			if err != nil {
				return CNIRun{}, err
			}
			samples[i][0], samples[i][1] = append(samples[i][0], add...), append(samples[i][1], del...)
			line += fmt.Sprintf(" %s ADD p50 %.1f ms DEL p50 %.1f ms;", p.name, summarise(add).P50, summarise(del).P50)
			b.meter.Add(1)
		}
		b.progress("%s", line[:len(line)-1])
	}
	lat := func(i int) PluginLatency {
		return PluginLatency{Add: summarise(samples[i][0]), Del: summarise(samples[i][1])}
	}
	up := len(plugins) - 1 // ptp+host-local goes last in the list
	run := CNIRun{Concurrency: c, Rounds: rounds, Terrane: lat(0), Upstream: lat(up)}
	run.Ratio = ratios(run.Terrane, run.Upstream)
	if len(plugins) == 3 {
		pol := lat(1)
		run.TerranePolicy = &pol
		run.PolicyRatio = &PolicyRatios{OverTerrane: ratios(pol, run.Terrane), OverUpstream: ratios(pol, run.Upstream)}
	}
	return run, nil
}

// ratios are a ÷ b of each quantile.
func ratios(a, b PluginLatency) CNIRatios {
	return CNIRatios{
		AddP50: ratio(a.Add.P50, b.Add.P50),
		AddP99: ratio(a.Add.P99, b.Add.P99),
		DelP50: ratio(a.Del.P50, b.Del.P50),
		DelP99: ratio(a.Del.P99, b.Del.P99),
	}
}

// startup times CNI VERSION of each plugin binary, in turn, from the
// host's namespace: what starting the process costs before any work.
func (b *cniBench) startup(ctx context.Context, terrane, upstream *plugin) (map[string]Latency, error) {
	bins := []struct {
		p   *plugin
		typ string
	}{{terrane, terrane.list.Plugins[0].Network.Type}, {upstream, "ptp"}, {upstream, "host-local"}}
	times := make([][]time.Duration, len(bins))
	for range startupRuns {
		for i, bin := range bins {
			err := ns.WithNetNSPath(bin.p.hostNetns, func(ns.NetNS) error {
				start := time.Now()
				_, err := bin.p.cni.GetVersionInfo(ctx, bin.typ)
				times[i] = append(times[i], time.Since(start))
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("%s VERSION: %w", bin.typ, err)
			}
		}
	}
	out := map[string]Latency{}
	for i, bin := range bins {
		out[bin.typ] = summarise(times[i])
	}
	return out, nil
}

// round adds size pods with p, c at a time, runs after (if any) on them,
// then deletes them the same way, and returns each call's latency. With
// p.kube the round is a kubelet's: Pod objects before the ADDs (untimed),
// enforcement verified after them, the objects deleted after the DELs.
func (b *cniBench) round(ctx context.Context, p *plugin, tag string, size, c int, after func(context.Context, []benchPod) error) (add, del []time.Duration, err error) {
	pods := make([]benchPod, size)
	for i := range pods {
		id := fmt.Sprintf("bench-%s-%s-%03d", p.tag, tag, i)
		pods[i] = benchPod{netns: b.netns[i], namespace: "default", name: fmt.Sprintf("pod-%03d", i)}
		pods[i].rt = runtimeConf(id, lab.NetnsPath(b.netns[i]), pods[i].namespace, pods[i].name, newUID())
	}
	if p.kube != nil {
		defer func() {
			if rerr := p.kube.remove(context.WithoutCancel(ctx)); rerr != nil && err == nil {
				err = rerr
			}
		}()
		if err := p.kube.create(ctx, pods); err != nil {
			return nil, nil, err
		}
	}
	add, err = b.each(ctx, p.hostNetns, pods, c, func(pod *benchPod) error {
		res, err := p.cni.AddNetworkList(ctx, p.list, pod.rt)
		if err != nil {
			return err
		}
		pod.addr, err = addrOf(res)
		return err
	})
	delAll := func(ctx context.Context) ([]time.Duration, error) {
		return b.each(ctx, p.hostNetns, pods, c, func(pod *benchPod) error { return p.cni.DelNetworkList(ctx, p.list, pod.rt) })
	}
	if err == nil && p.kube != nil {
		err = p.kube.verify(ctx, pods)
	}
	if err == nil && after != nil {
		err = after(ctx, pods)
	}
	if err != nil {
		// Take back what was added, so the namespaces stay usable for a
		// report of the failure; the lab's removal takes the rest.
		_, _ = delAll(context.WithoutCancel(ctx))
		return nil, nil, fmt.Errorf("%s ADD: %w", p.name, err)
	}
	del, err = delAll(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("%s DEL: %w", p.name, err)
	}
	return add, del, nil
}

// checkAddResult refuses an ADD that gave the pod no address.
func checkAddResult(res types.Result) error {
	_, err := addrOf(res)
	return err
}

// addrOf is the pod's address in an ADD result, which must hold one (a
// few microseconds inside the timed call).
func addrOf(res types.Result) (netip.Addr, error) {
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(r.IPs) == 0 {
		return netip.Addr{}, errors.New("the result holds no address")
	}
	a, ok := netip.AddrFromSlice(r.IPs[0].Address.IP)
	if !ok {
		return netip.Addr{}, fmt.Errorf("the result's address %v is not an IP address", r.IPs[0].Address.IP)
	}
	return a.Unmap(), nil
}

// each runs op for every pod, c at a time, each call on a thread inside
// the host namespace hostNetns (so the plugin libcni forks starts there,
// as under a container runtime), and returns each call's duration in pod
// order. Only op itself is timed; the namespace switch is not.
func (b *cniBench) each(ctx context.Context, hostNetns string, pods []benchPod, c int, op func(*benchPod) error) ([]time.Duration, error) {
	times := make([]time.Duration, len(pods))
	errs := make([]error, len(pods))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(c, len(pods)) {
		wg.Go(func() {
			for i := range next {
				errs[i] = ns.WithNetNSPath(hostNetns, func(ns.NetNS) error {
					start := time.Now()
					err := op(&pods[i])
					times[i] = time.Since(start)
					if err != nil {
						return fmt.Errorf("pod %s (netns %s): %w", pods[i].rt.ContainerID, pods[i].rt.NetNS, err)
					}
					return nil
				})
			}
		})
	}
	for i := range pods {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return times, errors.Join(errs...)
}

// runtimeConf is what containerd passes for a pod sandbox (as the lab's
// own pods get it).
func runtimeConf(containerID, netns, namespace, pod, uid string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: containerID,
		NetNS:       netns,
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", namespace},
			{"K8S_POD_NAME", pod},
			{"K8S_POD_INFRA_CONTAINER_ID", containerID},
			{"K8S_POD_UID", uid},
		},
		CapabilityArgs: map[string]any{"io.kubernetes.cri.pod-annotations": map[string]string{}},
	}
}
