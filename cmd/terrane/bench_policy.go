package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/policybench"
	"github.com/terrane-net/terrane/internal/progress"
)

func newBenchPolicyCommand() *cobra.Command {
	o := policybench.DefaultOptions()
	var (
		rules  []int
		output string
		quiet  bool
	)
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Network policy: throughput and connection rate at 10 and 10,000 rules, nftables against linear iptables chains; full sync time (root)",
		Long: `policy measures what enforcing NetworkPolicy costs, on this machine, in one run.

Per packet: it makes a node namespace routing between a client and a server
pod namespace (veths, /32 routes; named terrane-pb-*, deleted afterwards, also
on failure or Ctrl-C) and measures, pod → pod through the node, TCP throughput
(iperf3, one stream) and TCP connection rate (a connect/accept loop of
--conn-workers clients: connect, read a byte, close) for these
configurations, taking turns round by round so the machine's noise falls on
all of them alike:

  none             no policy
  nft-LOW/HIGH     Terrane's nftables table, LOW and HIGH rules per direction
  iptables-LOW/HIGH  the same policies as linear iptables chains

The policies (policygen.Pair) select both pods: the server's ingress and the
client's egress each have --rules LOW or HIGH rules, in policies of 10 rules;
every rule admits its own decoy address on its own port, and the last rule of
each direction admits the pair. The iptables rendering is what kube-router
and Calico's iptables dataplane do: a per-pod chain with one rule per (peer,
port) in policy and rule order, then DROP, behind a conntrack
ESTABLISHED,RELATED accept (--iptables: iptables-legacy, the x_tables
engine, by default; iptables-nft runs the same chain in nf_tables). Before the
first round of each configuration the kernel's rules are counted and a port
no rule admits is probed (it must be blocked exactly when a policy is on).

Full sync: one node's rule set (100 pods) of 1,000 policies over 10,000 pods
(policygen.BigCluster), compiled and applied into a fresh nftables table,
--sync-reps times; then an incremental change (one pod's label: compile and
apply of the difference), --sync-reps times.

Each figure is the median over the rounds (min and max in -o json); ratios are
taken within each round, then their median. Needs root, iperf3, nft and the
iptables command. Progress goes to stderr.`,
		Example: `  terrane bench policy
  terrane bench policy --rounds 5 --duration 3s -o json
  terrane bench policy --rules 10,1000 --iptables iptables-nft`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(rules) != 2 {
				return &exitError{code: 2, err: fmt.Errorf("--rules %v: want two numbers, LOW,HIGH", rules)}
			}
			o.Rules = [2]int{rules[0], rules[1]}
			if err := o.Validate(); err != nil {
				return &exitError{code: 2, err: err}
			}
			if output != "table" && output != "json" {
				return &exitError{code: 2, err: fmt.Errorf("-o %q: use table or json", output)}
			}
			if err := policybench.CheckEnvironment(o.Iptables); err != nil {
				return err
			}
			var bar *progress.Bar // nil with --quiet: draws nothing
			if !quiet {
				var err error
				if bar, err = newProgress(cmd.ErrOrStderr(), cmd.CommandPath()); err != nil {
					return err
				}
				defer bar.Done()
				o.Progress, o.Meter = bar.Logf, bar
			}
			ctx, stop := labContext(cmd)
			defer stop()
			res, err := policybench.Run(ctx, o)
			bar.Done() // before the result: stdout and stderr may share the terminal
			if err != nil {
				return fmt.Errorf("bench policy: %w", err)
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			return printBenchPolicy(cmd.OutOrStdout(), res)
		},
	}
	f := cmd.Flags()
	f.IntSliceVar(&rules, "rules", []int{o.Rules[0], o.Rules[1]}, "LOW,HIGH: rules per direction selecting the pair")
	f.DurationVar(&o.Duration, "duration", o.Duration, "length of each throughput and each connection-rate measurement, whole seconds")
	f.IntVar(&o.Rounds, "rounds", o.Rounds, "rounds: every configuration measured once per round")
	f.IntVar(&o.ConnWorkers, "conn-workers", o.ConnWorkers, "concurrent clients of the connection loop")
	f.StringVar(&o.Iptables, "iptables", o.Iptables, "iptables command of the linear rendering: iptables-legacy, iptables-nft or iptables")
	f.IntVar(&o.SyncReps, "sync-reps", o.SyncReps, "how many times the full sync and the incremental change are measured")
	f.StringVarP(&output, "output", "o", "table", "output: table or json")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress lines")
	return cmd
}

func printBenchPolicy(w io.Writer, r *policybench.Result) error {
	fmt.Fprintf(w, "machine: %s, %d cores, Linux %s, %s; load average %.2f at the start, %.2f at the end\n",
		r.Machine.CPU, r.Machine.Cores, r.Machine.Kernel, r.Machine.Go, r.LoadAvg[0], r.LoadAvg[1])
	fmt.Fprintf(w, "%d rounds of %.1f s per measurement, %d connection workers; %s\n\n", r.Rounds, r.Seconds, r.ConnWorkers, r.Iptables)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "config\trules/dir\tin kernel\tcompile ms\tinstall ms\tGbit/s (min-max)\tconn/s (min-max)\tdenied port blocked")
	for _, c := range r.Configs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%.2f (%.2f-%.2f)\t%.0f (%.0f-%.0f)\t%v\n", c.Name, c.Rules, c.Applied, c.CompileMs, c.InstallMs,
			c.Gbps.Median, c.Gbps.Min, c.Gbps.Max, c.ConnPerSec.Median, c.ConnPerSec.Min, c.ConnPerSec.Max, c.DeniedPortBlocked)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "ratio\t\t\t\t\tGbit/s (min-max)\tconn/s (min-max)")
	for _, q := range r.Ratios {
		fmt.Fprintf(tw, "%s (%s ÷ %s)\t\t\t\t\t%.3f (%.3f-%.3f)\t%.3f (%.3f-%.3f)\n", q.Name, q.A, q.B,
			q.Gbps.Median, q.Gbps.Min, q.Gbps.Max, q.ConnPerSec.Median, q.ConnPerSec.Min, q.ConnPerSec.Max)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	s := r.Sync
	fmt.Fprintf(w, "\nfull sync: %d policies over %d pods, one node's %d pods (%d isolated directions, %d set elements)\n",
		s.Policies, s.Pods, s.NodePods, s.Isolated, s.Elements)
	fmt.Fprintf(w, "  compile %.0f ms + apply %.0f ms = %.0f ms (median; total %.0f-%.0f ms)\n",
		s.CompileMs.Median, s.ApplyMs.Median, s.TotalMs.Median, s.TotalMs.Min, s.TotalMs.Max)
	fmt.Fprintf(w, "incremental change (one pod label, %d endpoint changed): compile %.0f ms + apply %.2f ms = %.0f ms (median)\n",
		s.ChangedEndpoints, s.IncCompileMs.Median, s.IncApplyMs.Median, s.IncTotalMs.Median)
	return nil
}
