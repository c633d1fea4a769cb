package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/labbench"
)

func newBenchBurstCommand() *cobra.Command {
	var (
		f           benchLabFlags
		o           labbench.BurstOptions
		upstreamBin string
	)
	cmd := &cobra.Command{
		Use:   "burst",
		Short: "A node's pods all at once: time until 110 pods answer, terrane-cni against ptp + host-local (root)",
		Long: `burst measures what a node goes through when its pods start together (a node
coming back, a Deployment scaled up): --pods pods (default 110, the kubelet's
default maxPods) are created at once through libcni (AddNetworkList), every
ADD in flight together as the kubelet's per-pod workers start them, and each
pod is then probed from the node's namespace (a UDP datagram answered by ICMP
port unreachable: both ways routed) until it answers.

It builds a one-host lab (server, agent, terrane-cni; /26 blocks, so the burst
claims blocks as it goes) and runs the same burst with the upstream ptp plugin
and host-local IPAM on that host in the same run; --rounds rounds alternate
which goes first, and the pods are deleted between rounds (untimed). The pods'
namespaces exist before the clock starts.

The result gives, per plugin, the median time to all reachable and to all ADDs
returned, ADD p50/p99 over every round, and ratio = terrane ÷ peer of the time
to all reachable; the goals are all reachable in under 5 s and a ratio of at
most 0.5. It also gives the CPU each side spent per ADD during the bursts
(the plugin processes', ptp's including its host-local; terrane's agent's
beside it) and cpu_ratio, terrane ÷ peer of those: unlike the times, they
hardly move with what else the machine runs. The lab is removed afterwards,
also on failure or Ctrl-C.`,
		Example: `  terrane bench burst
  terrane bench burst --pods 110 --rounds 5 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return &exitError{code: 2, err: err}
			}
			lo, err := f.labOptions(cmd.ErrOrStderr(), cmd.CommandPath())
			if err != nil {
				return err
			}
			o.LabOptions = lo
			ctx, stop := labContext(cmd)
			defer stop()
			if o.UpstreamBin = upstreamBin; upstreamBin == "" {
				if o.UpstreamBin, err = labbench.DefaultUpstreamDir(ctx); err != nil {
					return err
				}
				if err := labbench.EnsureUpstreamPlugins(ctx, o.UpstreamBin, lo.Progress); err != nil {
					return err
				}
			}
			res, err := labbench.RunBurst(ctx, o)
			finishProgress(lo)
			if err != nil {
				return fmt.Errorf("bench burst: %w", err)
			}
			if f.output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			return printBenchBurst(cmd.OutOrStdout(), res)
		},
	}
	f.register(cmd, "benchburst")
	cmd.Flags().IntVar(&o.Pods, "pods", labbench.DefaultBurstPods, "pods created at once")
	cmd.Flags().IntVar(&o.Rounds, "rounds", 3, "bursts per plugin, alternating which goes first")
	cmd.Flags().StringVar(&upstreamBin, "upstream-bin", "", "a directory holding the upstream ptp and host-local plugins (default: build them once)")
	return cmd
}

func printBenchBurst(w io.Writer, r *labbench.BurstResult) error {
	fmt.Fprintf(w, "machine: %s, %d cores, Linux %s, %s\n", r.Machine.CPU, r.Machine.Cores, r.Machine.Kernel, r.Machine.Go)
	fmt.Fprintf(w, "%d pods at once, %d rounds per plugin (medians)\n\n", r.Pods, r.Rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "plugin\tall reachable s\tall ADDs returned s\tADD p50 ms\tADD p99 ms\tCPU/ADD ms\t")
	for _, p := range []struct {
		name string
		b    labbench.BurstPlugin
	}{{"terrane", r.Terrane}, {"ptp+host-local", r.Peer}} {
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.1f\t%.1f\t%.2f\t\n", p.name, p.b.SecondsToAllReachable, p.b.SecondsToAllAdded, p.b.Add.P50, p.b.Add.P99, p.b.PluginCPUPerAdd+p.b.AgentCPUPerAdd)
	}
	fmt.Fprintf(tw, "terrane/peer\t%.2f×\t\t\t\t%.2f×\t\n", r.Ratio, r.CPURatio)
	if err := tw.Flush(); err != nil {
		return err
	}
	return printGoals(w, r.Goals)
}
