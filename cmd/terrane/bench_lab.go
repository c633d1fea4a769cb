package main

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/lab"
	"github.com/terrane-net/terrane/internal/labbench"
	"github.com/terrane-net/terrane/internal/progress"
)

// benchLabFlags are the options `bench cni` and `bench throughput` share.
type benchLabFlags struct {
	name, dir, pluginDir, output string
}

func (f *benchLabFlags) register(cmd *cobra.Command, name string) {
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", name, "the bench lab's name (letters and digits); it is removed afterwards")
	fl.StringVar(&f.dir, "dir", "", "the bench lab's directory (default /run/terrane-lab/NAME)")
	fl.StringVar(&f.pluginDir, "cni-bin-dir", "", "the directory holding terrane-cni (default: next to this binary)")
	fl.StringVarP(&f.output, "output", "o", "table", "output: table or json")
}

// labOptions checks the flags and the environment and finds the binaries;
// the progress (titled title) goes to stderr: call finishProgress before
// printing the result.
func (f *benchLabFlags) labOptions(stderr io.Writer, title string) (labbench.LabOptions, error) {
	if f.output != "table" && f.output != "json" {
		return labbench.LabOptions{}, &exitError{code: 2, err: fmt.Errorf("-o %q: use table or json", f.output)}
	}
	if err := lab.ValidateName(f.name); err != nil {
		return labbench.LabOptions{}, &exitError{code: 2, err: err}
	}
	if err := lab.CheckEnvironment(); err != nil {
		return labbench.LabOptions{}, err
	}
	exe, err := os.Executable()
	if err != nil {
		return labbench.LabOptions{}, err
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return labbench.LabOptions{}, err
	}
	bar, err := newProgress(stderr, title)
	if err != nil {
		return labbench.LabOptions{}, err
	}
	return labbench.LabOptions{Name: f.name, Dir: f.dir, Terrane: exe, PluginDir: f.pluginDir, Progress: bar.Logf, Meter: bar}, nil
}

// finishProgress erases the bar of lo's progress, if it drew one.
func finishProgress(lo labbench.LabOptions) {
	if b, ok := lo.Meter.(*progress.Bar); ok {
		b.Done()
	}
}

func newBenchCNICommand() *cobra.Command {
	var (
		f           benchLabFlags
		n           int
		conc        []int
		upstreamBin string
		withPolicy  bool
		kubeBins    string
	)
	cmd := &cobra.Command{
		Use:   "cni",
		Short: "Pod ADD/DEL latency: terrane-cni against ptp + host-local, through libcni on a lab host (root)",
		Long: `cni measures how long a container runtime waits for pod networking: CNI ADD and
DEL through libcni (AddNetworkList, DelNetworkList), the plugin started in the
host's network namespace as a runtime starts it.

It builds a one-host lab (server, agent, terrane-cni; /26 blocks) and, on that
host in the same run, the upstream ptp plugin with host-local IPAM
(containernetworking/plugins ` + labbench.UpstreamVersion + `, built once with go install into
.cache/bin of the checkout unless --upstream-bin names a directory holding
them). The pods' namespaces exist before the clock starts. After an untimed
warm-up, each concurrency level runs rounds of at least 20 pods: one plugin adds
the round's pods (--concurrency at a time) then deletes them, then the other
plugin does the same; the plugin that goes first alternates, so machine noise
hits both. Every ADD's latency is one sample; so is every DEL's. Each plugin
binary's start-up alone (CNI VERSION, 50 times each) is timed too.

--policy adds a third configuration, terrane+policy, in the same rounds (the
three take turns going first). The lab then runs a real etcd and kube-apiserver
(lab up --k8s; --kube-bins, or built once into the lab's cache) and no kubelet:
the benchmark plays it. host-1's agent runs without policy (terrane and ptp run
there); host-2's agent enforces NetworkPolicy from the API. The namespace bench
holds a default-deny (ingress and egress), an allow between its app=bench pods
on 8080/TCP and an allow of DNS to kube-system. Before each terrane+policy round
the benchmark creates the round's Pod objects (bound to host-2, app=bench) and
waits until its own watch of the API shows them, untimed, as a kubelet sees a
pod before it asks for its network; each ADD carries the Pod's
K8S_POD_NAMESPACE, K8S_POD_NAME and K8S_POD_UID, and the agent applies the rule
set isolating the pod before the ADD returns. After each round's ADDs the
benchmark checks that host-2's agent enforces that rule set (its policy.json
digest against the benchmark's own compile), and after the warm-up that one pod
reaches another on 8080 and not on 9090 on host-2, and on both ports on host-1;
a failed check fails the run. The result adds terrane+policy ÷ terrane and
terrane+policy ÷ ptp.

The result gives p50/p90/p99 of ADD and DEL per plugin and the ratios
terrane ÷ ptp (below 1: Terrane is faster), and checks the goals ADD p50 ≤ 1.0×
and ADD p99 ≤ 1.2×. Progress goes to stderr. The lab is removed afterwards,
also on failure or Ctrl-C.`,
		Example: `  terrane bench cni
  terrane bench cni --n 500 --concurrency 1,10,30 -o json
  terrane bench cni --policy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := labbench.CNIOptions{UpstreamBin: upstreamBin, N: n, Concurrency: conc, Policy: withPolicy, KubeBins: kubeBins}
			if err := opts.Validate(); err != nil {
				return &exitError{code: 2, err: err}
			}
			lo, err := f.labOptions(cmd.ErrOrStderr(), cmd.CommandPath())
			if err != nil {
				return err
			}
			opts.LabOptions = lo
			ctx, stop := labContext(cmd)
			defer stop()
			if upstreamBin == "" {
				if upstreamBin, err = labbench.DefaultUpstreamDir(ctx); err != nil {
					return err
				}
				if err := labbench.EnsureUpstreamPlugins(ctx, upstreamBin, lo.Progress); err != nil {
					return err
				}
				opts.UpstreamBin = upstreamBin
			}
			res, err := labbench.RunCNI(ctx, opts)
			finishProgress(lo)
			if err != nil {
				return fmt.Errorf("bench cni: %w", err)
			}
			if f.output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			return printBenchCNI(cmd.OutOrStdout(), res)
		},
	}
	f.register(cmd, "benchcni")
	cmd.Flags().IntVar(&n, "n", 200, "timed ADDs (and DELs) per plugin and concurrency level")
	cmd.Flags().IntSliceVar(&conc, "concurrency", []int{1, 30}, "concurrency levels: ADDs (DELs) in flight at once")
	cmd.Flags().StringVar(&upstreamBin, "upstream-bin", "", "a directory holding the upstream ptp and host-local plugins (default: build them once)")
	cmd.Flags().BoolVar(&withPolicy, "policy", false, "add terrane+policy: a second host whose agent enforces NetworkPolicy from a real kube-apiserver, its ADDs for Pods that policies isolate")
	cmd.Flags().StringVar(&kubeBins, "kube-bins", "", "with --policy: a directory holding etcd, kube-apiserver and kubectl (default: the lab's cache, built once)")
	return cmd
}

func printBenchCNI(w io.Writer, r *labbench.CNIResult) error {
	fmt.Fprintf(w, "machine: %s, %d cores, Linux %s, %s\n", r.Machine.CPU, r.Machine.Cores, r.Machine.Kernel, r.Machine.Go)
	fmt.Fprintf(w, "terrane: %s\nupstream: %s\n", r.Terrane, r.Upstream)
	if p := r.Policy; p != nil {
		fmt.Fprintf(w, "terrane+policy: %s's agent enforcing %s; verified after %d rounds' ADDs (%d pods; digest at the first read in %d rounds)\n",
			p.Host, strings.Join(p.Policies, ", "), p.VerifiedRounds, p.VerifiedPods, p.DigestAtOnce)
		var probes []string
		for _, pr := range p.Probes {
			verdict := "blocked"
			if pr.Reached {
				verdict = "reached"
			}
			probes = append(probes, fmt.Sprintf("%s %d/TCP %s", pr.Config, pr.Port, verdict))
		}
		fmt.Fprintf(w, "probes pod → pod: %s\n", strings.Join(probes, ", "))
	}
	fmt.Fprintf(w, "%d ADDs and DELs per plugin and concurrency\n\n", r.N)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "concurrency\tplugin\tADD p50 ms\tADD p99 ms\tDEL p50 ms\tDEL p99 ms\t")
	ratioRow := func(c int, name string, q labbench.CNIRatios) {
		fmt.Fprintf(tw, "%d\t%s\t%.2f×\t%.2f×\t%.2f×\t%.2f×\t\n", c, name, q.AddP50, q.AddP99, q.DelP50, q.DelP99)
	}
	type row struct {
		name string
		l    labbench.PluginLatency
	}
	for _, run := range r.Runs {
		rows := []row{{"terrane", run.Terrane}}
		if run.TerranePolicy != nil {
			rows = append(rows, row{"terrane+policy", *run.TerranePolicy})
		}
		rows = append(rows, row{"ptp+host-local", run.Upstream})
		for _, row := range rows {
			fmt.Fprintf(tw, "%d\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t\n", run.Concurrency, row.name, row.l.Add.P50, row.l.Add.P99, row.l.Del.P50, row.l.Del.P99)
		}
		ratioRow(run.Concurrency, "terrane/ptp", run.Ratio)
		if q := run.PolicyRatio; q != nil {
			ratioRow(run.Concurrency, "terrane+policy/terrane", q.OverTerrane)
			ratioRow(run.Concurrency, "terrane+policy/ptp", q.OverUpstream)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nplugin start-up alone (CNI VERSION, p50 / p99 ms):")
	for _, name := range slices.Sorted(maps.Keys(r.Startup)) {
		fmt.Fprintf(w, "  %s %.2f / %.2f", name, r.Startup[name].P50, r.Startup[name].P99)
	}
	fmt.Fprintln(w)
	return printGoals(w, r.Goals)
}

func printGoals(w io.Writer, goals []labbench.Goal) error {
	fmt.Fprintln(w, "\ngoals:")
	for _, g := range goals {
		op, verdict := "≥", "met"
		if g.AtMost {
			op = "≤"
		}
		if !g.Met {
			verdict = "MISSED"
		}
		ci := ""
		if g.CI95 != nil {
			ci = fmt.Sprintf(" [%.2f, %.2f]", g.CI95[0], g.CI95[1])
		}
		unit := "×"
		if g.Unit != "" {
			unit = " " + g.Unit
		}
		if _, err := fmt.Fprintf(w, "  %-44s %.2f%s%s (want %s %.2f%s)  %s\n", g.Name, g.Ratio, unit, ci, op, g.Want, unit, verdict); err != nil {
			return err
		}
	}
	return nil
}

func newBenchThroughputCommand() *cobra.Command {
	var (
		f               benchLabFlags
		seconds, rounds int
		ebpfFast        bool
		bigTCP          bool
		overlayBigTCP   bool
		ipv6            bool
	)
	cmd := &cobra.Command{
		Use:   "throughput",
		Short: "Pod throughput: routed by Terrane against host to host and a VXLAN overlay, with iperf3 on a lab (root)",
		Long: `throughput measures what Terrane's routed pod networking costs in bandwidth,
against the underlay itself and against an overlay, on one lab in one run.

It builds a lab of two hosts on one L2 segment with one pod each, then adds a
VXLAN overlay on the same hosts: in each host's namespace a vxlan device (id 42,
port 4789, local the host's address, remote the other host's, over eth0) on a
bridge, with a veth to an extra overlay pod namespace (10.250.0.1/24 and
10.250.0.2/24, MTU 1450 as a real overlay needs). iperf3 (TCP, one stream,
JSON, --seconds per test) measures three paths:

  routed  pod → pod across the hosts, routed by Terrane
  host    host → host over the same underlay
  vxlan   overlay pod → overlay pod across the VXLAN bridge

Each of --rounds rounds has two phases:

  sequential  routed, then host, then vxlan, one at a time, unpinned: each
              path's best single-stream rate on an otherwise idle lab
  shared CPU  the three at the same time, every iperf3 client pinned to one
              CPU and every server to another (iperf3 -A; CPUs 0 and 1, one
              CPU on a 1-CPU machine): each path gets an equal CPU share and
              the machine's noise hits all three alike, so the ratio is
              throughput per equal CPU share, what a CPU-bound node delivers

The result gives each path's median Gbit/s, the ratios routed ÷ host and
routed ÷ vxlan of every round with their median and a 95% bootstrap
confidence interval of the median (2000 resamples, fixed seed), and checks the
goals routed ≥ 0.95× host and ≥ 1.03× VXLAN on both phases: sequential by the
ratio of the medians (as before), shared CPU by the median (CI shown). With
few rounds the interval is wide: the defaults (8 rounds of 3 s, about 100 s)
are the least for comparing setups, and on a noisy machine pool several runs.
The machine is CPU-bound: compare ratios, not absolute rates across runs.

--ebpf runs the lab's agents with --ebpf (the routed path takes the eBPF fast
path; the "hosts' forwarded" column shows the hosts' IP forwarding went to 0).
The agents run as they do by default, with BIG TCP (GSO/GRO limits of the
uplinks and the pod veths raised to what the uplink takes: 512 KiB on the lab's
veths), so the routed and the host path both get it; each client's and server's
gso_ipv4_max_size is in the output. --big-tcp=false runs them with
--big-tcp=false: every limit at the kernel's 64 KiB. The overlay keeps 64 KiB, as a VXLAN CNI
runs it: --overlay-big-tcp gives its veth pair, vxlan device and bridge the
same limits, but on Linux 6.18 the overlay pod's TCP sending IPv4 BIG TCP
packets into the VXLAN device collapsed its throughput (docs/benchmarks.md).

--ipv6 measures every path over IPv6: the lab's segment is dual-stack (the
hosts' IPv6 addresses carry the host path), the pods are dual-stack and the
routed path goes to the server pod's IPv6 address, and the overlay pods get
fd00:250::1/64 and fd00:250::2/64 (the VXLAN tunnel itself stays on the IPv4
underlay). The result's "family" says which.

Needs iperf3 (apt-get install iperf3). Progress goes to stderr. The lab and the
overlay are removed afterwards, also on failure or Ctrl-C.`,
		Example: `  terrane bench throughput                     # 8 rounds of 3 s, the agents' defaults
  terrane bench throughput --big-tcp=false     # every GSO/GRO limit at 64 KiB
  terrane bench throughput --ebpf
  terrane bench throughput --overlay-big-tcp
  terrane bench throughput --ipv6              # every path over IPv6
  terrane bench throughput --seconds 10 --rounds 5 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := labbench.ThroughputOptions{Seconds: seconds, Rounds: rounds, EBPF: ebpfFast, BigTCP: bigTCP, OverlayBigTCP: overlayBigTCP, IPv6: ipv6}
			if err := opts.Validate(); err != nil {
				return &exitError{code: 2, err: err}
			}
			lo, err := f.labOptions(cmd.ErrOrStderr(), cmd.CommandPath())
			if err != nil {
				return err
			}
			opts.LabOptions = lo
			if _, err := labbench.CheckIperf3(); err != nil {
				return err
			}
			ctx, stop := labContext(cmd)
			defer stop()
			res, err := labbench.RunThroughput(ctx, opts)
			finishProgress(lo)
			if err != nil {
				return fmt.Errorf("bench throughput: %w", err)
			}
			if f.output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			return printBenchThroughput(cmd.OutOrStdout(), res)
		},
	}
	f.register(cmd, "benchtput")
	cmd.Flags().IntVar(&seconds, "seconds", 3, "length of each iperf3 test")
	cmd.Flags().IntVar(&rounds, "rounds", 8, "rounds: each path measured once sequentially and once with the others on shared CPUs (8 or more to compare setups on a noisy machine)")
	cmd.Flags().BoolVar(&ebpfFast, "ebpf", false, "run the lab's agents with --ebpf: the routed path goes through the eBPF fast path")
	cmd.Flags().BoolVar(&bigTCP, "big-tcp", true, "the lab's agents with BIG TCP, their default (the uplinks' and pod veths' GSO/GRO limits at what the uplink takes; the overlay keeps 64 KiB); --big-tcp=false: 64 KiB everywhere")
	cmd.Flags().BoolVar(&overlayBigTCP, "overlay-big-tcp", false, "with --big-tcp: give the overlay's devices the same limits (IPv4 BIG TCP into VXLAN collapsed on Linux 6.18)")
	cmd.Flags().BoolVar(&ipv6, "ipv6", false, "measure every path over IPv6 (dual-stack segment and pods, IPv6 in the overlay)")
	return cmd
}

func printBenchThroughput(w io.Writer, r *labbench.ThroughputResult) error {
	fmt.Fprintf(w, "machine: %s, %d cores, Linux %s, %s\n", r.Machine.CPU, r.Machine.Cores, r.Machine.Kernel, r.Machine.Go)
	fast := "routes"
	if r.EBPF {
		fast = "eBPF fast path"
	}
	bigTCP := "off"
	switch {
	case r.BigTCP && r.OverlayBigTCP:
		bigTCP = "on (routed, host and overlay)"
	case r.BigTCP:
		bigTCP = "on (routed and host; the overlay keeps 64 KiB)"
	}
	fmt.Fprintf(w, "%s, TCP over IPv%d, one stream, %d s per test, %d rounds, routed path: %s, BIG TCP: %s\n", r.Iperf3, r.Family, r.Seconds, r.Rounds, fast, bigTCP)
	var links []string
	for _, p := range r.Paths {
		links = append(links, fmt.Sprintf("%s %d/%d", p.Kind, p.ClientLink.GSOIPv4MaxSize, p.ServerLink.GROIPv4MaxSize))
	}
	fmt.Fprintf(w, "eth0 gso_ipv4_max_size (client) / gro_ipv4_max_size (server), bytes: %s\n", strings.Join(links, ", "))
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}

	fmt.Fprintf(w, "\nsequential (one path at a time):\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "path\tmedian Gbit/s\truns Gbit/s\tretransmits\thosts' forwarded\tMTU\tfrom → to")
	for _, p := range r.Paths {
		var retr int64
		for _, run := range p.Runs {
			retr += run.Retransmits
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t%d\t%d\t%d\t%s → %s\n", p.Kind, p.MedianGbps, runsGbps(p.Runs), retr, p.HostForwarded, p.MTU, p.From, p.To)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "ratios of the medians: routed/host %.3f×  routed/vxlan %.3f×\n", r.RoutedOverHost, r.RoutedOverVXLAN)
	fmt.Fprintf(w, "medians of the rounds' ratios [95%% CI]: routed/host %s  routed/vxlan %s\n",
		ratioCI(r.Sequential.RoutedOverHost), ratioCI(r.Sequential.RoutedOverVXLAN))

	fmt.Fprintf(w, "\nshared CPU (the three at once; iperf3 clients on CPU %d, servers on CPU %d; hosts' forwarded %d):\n",
		r.Shared.ClientCPU, r.Shared.ServerCPU, r.Shared.HostForwarded)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "path\tmedian Gbit/s\truns Gbit/s\tretransmits")
	for _, p := range r.Shared.Paths {
		var retr int64
		for _, run := range p.Runs {
			retr += run.Retransmits
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t%d\n", p.Kind, p.MedianGbps, runsGbps(p.Runs), retr)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "medians of the rounds' ratios [95%% CI]: routed/host %s  routed/vxlan %s\n",
		ratioCI(r.Shared.RoutedOverHost), ratioCI(r.Shared.RoutedOverVXLAN))
	return printGoals(w, r.Goals)
}

func runsGbps(runs []labbench.IperfRun) string {
	var s []string
	for _, run := range runs {
		s = append(s, fmt.Sprintf("%.2f", run.Gbps))
	}
	return strings.Join(s, " ")
}

func ratioCI(s labbench.RatioStats) string {
	return fmt.Sprintf("%.3f× [%.3f, %.3f]", s.Median, s.CI95[0], s.CI95[1])
}

func newBenchChurnCommand() *cobra.Command {
	var (
		f    benchLabFlags
		opts labbench.ChurnOptions
	)
	cmd := &cobra.Command{
		Use:   "churn",
		Short: "Store writes per pod while a node churns pods, against a write per endpoint (root)",
		Long: `churn measures what a node's pod churn costs the cluster store. It builds a
one-host lab (server, agent, terrane-cni; /26 blocks), then --rounds times
creates --pods pods through libcni at --rate per second, waits until the server
counts every one of them (the agent's batched address reports), and deletes
them. It reads the server's store write counters (terrane_store_writes_total and
terrane_store_other_writes_total) before and after.

Side by side, in the same run: the same churn of endpoints through the server's
API, one store transaction per endpoint — the design Romana v2 and Calico IPAM
use for every pod. The ratio is CNI ÷ API writes per endpoint created. The goal:
at most 0.05 store writes per pod created through CNI.

Also reported: the longest wait after a round's last ADD until the server counted
every pod.`,
		Example: `  terrane bench churn
  terrane bench churn --pods 110 --rounds 5 --rate 20 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.Validate(); err != nil {
				return &exitError{code: 2, err: err}
			}
			lo, err := f.labOptions(cmd.ErrOrStderr(), cmd.CommandPath())
			if err != nil {
				return err
			}
			opts.LabOptions = lo
			ctx, stop := labContext(cmd)
			defer stop()
			res, err := labbench.RunChurn(ctx, opts)
			finishProgress(lo)
			if err != nil {
				return fmt.Errorf("bench churn: %w", err)
			}
			if f.output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			return printBenchChurn(cmd.OutOrStdout(), res)
		},
	}
	f.register(cmd, "benchchurn")
	cmd.Flags().IntVar(&opts.Pods, "pods", 110, "pods created (then deleted) per round: a node's kubelet default maximum")
	cmd.Flags().IntVar(&opts.Rounds, "rounds", 3, "rounds of creating and deleting every pod")
	cmd.Flags().Float64Var(&opts.Rate, "rate", 10, "pods created (and deleted) per second; 0 for as fast as they go")
	return cmd
}

func printBenchChurn(w io.Writer, r *labbench.ChurnResult) error {
	fmt.Fprintf(w, "machine: %s, %d cores, Linux %s, %s\n", r.Machine.CPU, r.Machine.Cores, r.Machine.Kernel, r.Machine.Go)
	rate := fmt.Sprintf("%g per second", r.Rate)
	if r.Rate == 0 {
		rate = "as fast as they go"
	}
	fmt.Fprintf(w, "%d rounds of %d pods created then deleted, %s\n\n", r.Rounds, r.Pods, rate)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tcreated\tstate writes\tother writes\twrites per endpoint\tseconds\t")
	for _, row := range []struct {
		name string
		s    labbench.ChurnSide
	}{{"cni (agent)", r.CNI}, {"api (a write per endpoint)", r.API}} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.4f\t%.1f\t\n", row.name, row.s.Created, row.s.StateWrites, row.s.OtherWrites, row.s.WritesPerPod, row.s.Seconds)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nratio cni ÷ api: %.4f\nthe server counted every pod at most %.1f s after a round's last ADD\n", r.Ratio, r.CountLagSeconds)
	return printGoals(w, r.Goals)
}
