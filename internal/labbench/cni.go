package labbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
}

// CNIResult is the CNI benchmark's outcome. Ratios are terrane ÷
// ptp+host-local: below 1 Terrane is faster.
type CNIResult struct {
	Machine  Machine  `json:"machine"`
	N        int      `json:"n"`
	Terrane  string   `json:"terrane"`
	Upstream string   `json:"upstream"`
	Runs     []CNIRun `json:"runs"`
	// Startup is each plugin binary's start-up alone: CNI VERSION through
	// libcni, one at a time (a ptp ADD starts ptp and host-local).
	Startup map[string]Latency `json:"startup_version_exec"`
	Goals   []Goal             `json:"goals"`
}

// CNIRun is one concurrency level.
type CNIRun struct {
	Concurrency int `json:"concurrency"`
	// Rounds alternated the plugins; each round added a batch of pods with
	// one plugin, then deleted them, then the same with the other.
	Rounds   int           `json:"rounds"`
	Terrane  PluginLatency `json:"terrane"`
	Upstream PluginLatency `json:"ptp_host_local"`
	Ratio    CNIRatios     `json:"ratio_terrane_over_ptp"`
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
	return errors.Join(errs...)
}

// plugin is one side of the comparison.
type plugin struct {
	name string
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
}

// RunCNI builds a one-host lab, then times CNI ADD and DEL through libcni
// for terrane-cni and for ptp + host-local on that host, alternating the
// plugins round by round, at each concurrency level. The lab is removed
// before it returns.
func RunCNI(ctx context.Context, o CNIOptions) (res *CNIResult, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if missing := missingUpstream(o.UpstreamBin); len(missing) > 0 {
		return nil, fmt.Errorf("upstream plugin directory %q lacks %s (EnsureUpstreamPlugins builds them)", o.UpstreamBin, strings.Join(missing, ", "))
	}
	st, down, err := upLab(ctx, o.LabOptions, cniScenario)
	if down != nil {
		defer down()
	}
	if err != nil {
		return nil, err
	}
	n := o.names()
	terrane, err := terranePlugin(n)
	if err != nil {
		return nil, err
	}
	upstream, err := upstreamPlugin(n, o.UpstreamBin)
	if err != nil {
		return nil, err
	}
	b := &cniBench{n: n, hostNetns: lab.NetnsPath(n.Node(cniHost)), progress: o.progress}

	// The pods' namespaces, made once before any timing and reused by
	// every round (each DEL leaves them empty).
	batch := min(max(slices.Max(o.Concurrency), minBatch), max(o.N, warmupPods))
	o.progress("creating %d pod namespaces (%s…)", batch, n.Pod("b000"))
	if err := b.makeNetns(ctx, batch); err != nil {
		return nil, err
	}

	res = &CNIResult{Machine: thisMachine(), N: o.N, Terrane: "terrane-cni, agent and server of lab " + st.Name + " (" + terraneNet + ")",
		Upstream: "ptp + host-local " + UpstreamVersion + " (" + upstreamRange + ", dataDir in the lab directory)"}
	o.progress("warm-up: %d pods through each plugin, untimed", warmupPods)
	for _, p := range []*plugin{terrane, upstream} {
		if _, _, err := b.round(ctx, p, "warmup", warmupPods, 1); err != nil {
			return nil, err
		}
	}
	o.progress("start-up: CNI VERSION of terrane-cni, ptp and host-local, %d each, alternating", startupRuns)
	if res.Startup, err = b.startup(ctx, terrane, upstream); err != nil {
		return nil, err
	}
	for _, c := range o.Concurrency {
		run, err := b.run(ctx, terrane, upstream, o.N, c, max(c, minBatch))
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

// terranePlugin is the conflist the host's agent installed.
func terranePlugin(n lab.Names) (*plugin, error) {
	files, err := libcni.ConfFiles(n.CNIConfDir(cniHost), []string{".conflist"})
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no CNI conflist in %s (%v)", n.CNIConfDir(cniHost), err)
	}
	list, err := libcni.ConfListFromFile(files[0])
	if err != nil {
		return nil, err
	}
	return &plugin{name: "terrane", cni: libcni.NewCNIConfigWithCacheDir([]string{n.CNIBinDir(cniHost)}, n.CNICache(), nil), list: list}, nil
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
	return &plugin{name: "ptp+host-local", cni: libcni.NewCNIConfigWithCacheDir([]string{bin}, filepath.Join(n.Dir, "cni-cache-upstream"), nil), list: list}, nil
}

type cniBench struct {
	n         lab.Names
	hostNetns string
	netns     []string
	progress  func(string, ...any)
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
// batch pods; the plugin that goes first alternates.
func (b *cniBench) run(ctx context.Context, terrane, upstream *plugin, n, c, batch int) (CNIRun, error) {
	samples := map[*plugin]*[2][]time.Duration{terrane: {}, upstream: {}}
	rounds := (n + batch - 1) / batch
	b.progress("concurrency %d: %d round(s) of up to %d pods per plugin, alternating", c, rounds, batch)
	for r := range rounds {
		size := min(batch, n-r*batch)
		order := []*plugin{terrane, upstream}
		if r%2 == 1 {
			order = []*plugin{upstream, terrane}
		}
		line := fmt.Sprintf("  c=%d round %d/%d (%d pods):", c, r+1, rounds, size)
		for _, p := range order {
			add, del, err := b.round(ctx, p, fmt.Sprintf("c%dr%d", c, r), size, c)
			if err != nil {
				return CNIRun{}, err
			}
			s := samples[p]
			s[0], s[1] = append(s[0], add...), append(s[1], del...)
			line += fmt.Sprintf(" %s ADD p50 %.1f ms DEL p50 %.1f ms;", p.name, summarise(add).P50, summarise(del).P50)
		}
		b.progress("%s", line[:len(line)-1])
	}
	run := CNIRun{Concurrency: c, Rounds: rounds,
		Terrane:  PluginLatency{Add: summarise(samples[terrane][0]), Del: summarise(samples[terrane][1])},
		Upstream: PluginLatency{Add: summarise(samples[upstream][0]), Del: summarise(samples[upstream][1])},
	}
	run.Ratio = CNIRatios{
		AddP50: ratio(run.Terrane.Add.P50, run.Upstream.Add.P50),
		AddP99: ratio(run.Terrane.Add.P99, run.Upstream.Add.P99),
		DelP50: ratio(run.Terrane.Del.P50, run.Upstream.Del.P50),
		DelP99: ratio(run.Terrane.Del.P99, run.Upstream.Del.P99),
	}
	return run, nil
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
			err := ns.WithNetNSPath(b.hostNetns, func(ns.NetNS) error {
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

// round adds size pods with p, c at a time, then deletes them the same
// way, and returns each call's latency.
func (b *cniBench) round(ctx context.Context, p *plugin, tag string, size, c int) (add, del []time.Duration, err error) {
	pods := make([]*libcni.RuntimeConf, size)
	for i := range pods {
		pods[i] = runtimeConf(fmt.Sprintf("bench-%s-%s-%03d", p.name[:3], tag, i), lab.NetnsPath(b.netns[i]), fmt.Sprintf("pod-%03d", i))
	}
	add, err = b.each(ctx, pods, c, func(rt *libcni.RuntimeConf) error {
		res, err := p.cni.AddNetworkList(ctx, p.list, rt)
		if err != nil {
			return err
		}
		return checkAddResult(res)
	})
	if err != nil {
		// Take back what was added, so the namespaces stay usable for a
		// report of the failure; the lab's removal takes the rest.
		_, _ = b.each(context.WithoutCancel(ctx), pods, c, func(rt *libcni.RuntimeConf) error { return p.cni.DelNetworkList(ctx, p.list, rt) })
		return nil, nil, fmt.Errorf("%s ADD: %w", p.name, err)
	}
	del, err = b.each(ctx, pods, c, func(rt *libcni.RuntimeConf) error { return p.cni.DelNetworkList(ctx, p.list, rt) })
	if err != nil {
		return nil, nil, fmt.Errorf("%s DEL: %w", p.name, err)
	}
	return add, del, nil
}

// checkAddResult refuses an ADD that gave the pod no address (not timed:
// it runs after the clock stopped in each).
func checkAddResult(res types.Result) error {
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return err
	}
	if len(r.IPs) == 0 {
		return errors.New("the result holds no address")
	}
	return nil
}

// each runs op for every pod, c at a time, each call on a thread inside
// the host's namespace (so the plugin libcni forks starts there, as under
// a container runtime), and returns each call's duration in pod order.
// Only op itself is timed; the namespace switch is not.
func (b *cniBench) each(ctx context.Context, pods []*libcni.RuntimeConf, c int, op func(*libcni.RuntimeConf) error) ([]time.Duration, error) {
	times := make([]time.Duration, len(pods))
	errs := make([]error, len(pods))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(c, len(pods)) {
		wg.Go(func() {
			for i := range next {
				errs[i] = ns.WithNetNSPath(b.hostNetns, func(ns.NetNS) error {
					start := time.Now()
					err := op(pods[i])
					times[i] = time.Since(start)
					if err != nil {
						return fmt.Errorf("pod %s (netns %s): %w", pods[i].ContainerID, pods[i].NetNS, err)
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
func runtimeConf(containerID, netns, pod string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: containerID,
		NetNS:       netns,
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", "default"},
			{"K8S_POD_NAME", pod},
			{"K8S_POD_INFRA_CONTAINER_ID", containerID},
		},
		CapabilityArgs: map[string]any{"io.kubernetes.cri.pod-annotations": map[string]string{}},
	}
}
