package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/labbench"
)

func newBenchChaosCommand() *cobra.Command {
	var (
		f benchLabFlags
		o labbench.ChaosOptions
	)
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Allocations and pods under faults: a real 3-member etcd cluster, servers, agents and hosts killed (root)",
		Long: `chaos proves that no acknowledged allocation is lost, duplicated or leaked while
the control plane fails. It starts a real 3-member etcd cluster (each member a
'terrane lab etcd-member' process in its own network namespace on a bridge),
--servers 'terrane server --store etcd' processes on it (mTLS on unix
sockets), and --workers workers, each acting as one host: it registers, claims
a block, then allocates and releases VM-port endpoints through the API at
--rate operations per second in total, holding at most --live endpoints. On
an error a worker retries the same operation (same endpoint ID) against the
next server.

With --hosts (default 3) the run also has a cluster's nodes: that many host
namespaces on one L2 segment, each with a 'terrane agent' given every server
(--server unix://...,unix://...: it fails over). Each host has one probe
pod that lives the whole run; churn pods are created and deleted through
libcni (as a runtime drives terrane-cni) at --pod-rate, at most
--pods-per-host on a host. Every pod pings every other every
--probe-interval from the moment both exist until one is deleted.

Every --fault-every one fault is injected, in this order: the etcd leader
killed -9, a follower killed -9, a member partitioned (its link set down;
the leader and a follower in turn), a server killed -9, and with hosts an
agent killed -9 and a whole host lost (its agent killed, its namespace and
its pods' deleted, then the host removed from the server as an operator or
the Node controller would). Each is healed after a third of the interval
(the process started again, the link set up, the lost host built again
from nothing under its name, with a new probe pod), and the next waits
until every member and server serves again.

The load stops after --duration, --allocations acknowledged allocations or
--faults faults, whichever comes first. Then everything is healed, the server's audit
(ctl check) runs, and the state one server reads is compared with what the
workers were acknowledged: duplicates (an address held twice, blocks
overlapping), lost (acknowledged, not released, missing), leaked_after_gc
(present though never acknowledged or released); for pods, the server's
endpoints on the hosts against the pods that exist, once the agents'
reports caught up. Per fault the result gives the longest time in which no
worker's operation succeeded and the longest time a pair of pods that
should reach did not (pair_unreachable_seconds; a pair should reach from
when both its pods' ADDs returned until one's host is lost). The exit status is
1 if duplicates, lost or leaked is not 0, or a fault could not be injected or
healed (the load then stops early). The lab is removed afterwards, also
on failure or Ctrl-C.`,
		Example: `  terrane bench chaos                       # 60 s, a fault every 10 s, 3 hosts
  terrane bench chaos --hosts 0             # the control plane alone: API load, no agents
  terrane bench chaos --duration 0 --allocations 1000000 --rate 0 --workers 16 -o json`,
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
			res, err := labbench.RunChaos(ctx, o)
			finishProgress(lo)
			if err != nil {
				return fmt.Errorf("bench chaos: %w", err)
			}
			if f.output == "json" {
				err = writeJSON(cmd.OutOrStdout(), res)
			} else {
				err = printBenchChaos(cmd.OutOrStdout(), res)
			}
			if err != nil {
				return err
			}
			if res.Bad() {
				return &exitError{code: 1, err: fmt.Errorf("bench chaos: %d duplicates, %d lost, %d leaked", res.Duplicates, res.Lost, res.LeakedAfterGC)}
			}
			for _, f := range res.Faults {
				if f.Error != "" {
					return &exitError{code: 1, err: fmt.Errorf("bench chaos: fault %s %s: %s", f.Kind, f.Target, f.Error)}
				}
			}
			return nil
		},
	}
	f.register(cmd, "benchchaos")
	fl := cmd.Flags()
	fl.IntVar(&o.Servers, "servers", 2, "terrane server processes on the etcd cluster (2 or 3)")
	fl.IntVar(&o.Workers, "workers", 4, "load workers, each acting as one host")
	fl.Float64Var(&o.Rate, "rate", 100, "allocations and releases per second, all workers together (0: as fast as they go)")
	fl.DurationVar(&o.Duration, "duration", time.Minute, "how long the load runs (0: until --allocations)")
	fl.IntVar(&o.Allocations, "allocations", 0, "stop the load after this many acknowledged allocations (0: --duration only)")
	fl.IntVar(&o.Live, "live", 16, "endpoints a worker holds at most (it allocates below, releases its oldest at)")
	fl.DurationVar(&o.FaultEvery, "fault-every", 10*time.Second, "time between faults (0: none)")
	fl.IntVar(&o.Faults, "faults", 0, "end the load once this many faults were injected and recovered from (0: --duration or --allocations only); one of each kind: 6 with hosts, 4 without")
	fl.DurationVar(&o.Timeout, "timeout", 3*time.Second, "bound of one API request before the worker tries the next server")
	fl.IntVar(&o.Hosts, "hosts", 3, "hosts with an agent, a probe pod and churn pods (0: the API load alone; 2 to 8)")
	fl.Float64Var(&o.PodRate, "pod-rate", 2, "churn pods created or deleted per second, all hosts together (0: the probe pods only)")
	fl.IntVar(&o.PodsPerHost, "pods-per-host", 4, "churn pods a host holds at most (it adds below, deletes its oldest at)")
	fl.StringVar(&o.KeepLogs, "keep-logs", "", "copy the lab's logs (etcd members, servers, agents) into DIR/NAME-logs before removing it")
	fl.DurationVar(&o.ProbeInterval, "probe-interval", 100*time.Millisecond, "time between two echoes of one pair of pods")
	return cmd
}

func printBenchChaos(w io.Writer, r *labbench.ChaosResult) error {
	fmt.Fprintf(w, "machine: %s, %d cores, Linux %s, %s\n", r.Machine.CPU, r.Machine.Cores, r.Machine.Kernel, r.Machine.Go)
	fmt.Fprintf(w, "%d etcd members, %d servers, %d workers, %.0f ops/s, %.1f s\n", r.Members, r.Servers, r.Workers, r.Rate, r.Seconds)
	fmt.Fprintf(w, "acknowledged: %d allocations, %d releases (%d requests retried on another server)\n", r.Allocations, r.Releases, r.Retries)
	fmt.Fprintf(w, "held at the end: %d, present: %d; duplicates %d, lost %d, leaked after gc %d, in doubt %d\n",
		r.Held, r.Present, r.Duplicates, r.Lost, r.LeakedAfterGC, r.InDoubt)
	for _, e := range r.Examples {
		fmt.Fprintf(w, "  %s\n", e)
	}
	check := "clean"
	if !r.CheckClean {
		check = fmt.Sprintf("%d findings", len(r.CheckFindings))
	}
	fmt.Fprintf(w, "server audit (ctl check): %s\n", check)
	if r.Hosts > 0 {
		fmt.Fprintf(w, "pods on %d hosts: %d ADDs, %d DELs, %d ADD and %d DEL failures, %d gone with lost hosts, %d at the end\n",
			r.Hosts, r.PodAdds, r.PodDels, r.PodAddFailures, r.PodDelFailures, r.PodsGoneWithHosts, r.Pods)
		fmt.Fprintf(w, "pings: %d pairs of pods, %d echoes, %d unanswered; longest a pair that should reach did not: %.2f s %s\n",
			r.ProbePairs, r.Echoes, r.EchoesLost, r.PairUnreachableSeconds, r.PairUnreachable)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "fault\ttarget\tat s\thealed s\trecovered s\tunavailable s\tpair unreachable s\terror")
	for _, f := range r.Faults {
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f %s\t%s\n", f.Kind, f.Target, f.AtSeconds, f.HealedSeconds, f.RecoveredSeconds, f.UnavailableSeconds, f.PairUnreachableSeconds, f.PairUnreachable, f.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "longest time without a successful operation: %.2f s\n", r.UnavailableSeconds)
	return err
}
