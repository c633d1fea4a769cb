package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/lab"
)

type labFlags struct {
	name, dir, output string
}

func (f *labFlags) labDir() string {
	if f.dir != "" {
		return f.dir
	}
	return lab.DefaultDir(f.name)
}

func (f *labFlags) json() (bool, error) {
	switch f.output {
	case "", "text":
		return false, nil
	case "json":
		return true, nil
	}
	return false, fmt.Errorf("-o %q: use text or json", f.output)
}

func newLabCommand() *cobra.Command {
	f := &labFlags{}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "A whole multi-host cluster on one machine, in network namespaces (root)",
		Long: `lab builds a Terrane cluster out of network namespaces on this machine: hosts on
L2 segments (a bridge per segment), racks behind router namespaces joined by a
spine, the server, one agent per host inside the host's namespace, and pods
created through libcni exactly as a container runtime creates them. Then it
proves every pod reaches every other with real TCP and ICMP probes.

Without --scenario, 'lab up' runs the shipped flat-l2 scenario (one segment,
3 hosts, 6 pods). Shipped scenarios: ` + strings.Join(lab.Shipped(), ", ") + ` (docs/lab.md
describes the format). Everything a lab makes is named terrane-lab-<name>-*
and lives in --dir; 'lab down' removes it all, even after a crash.`,
		Example: `  terrane lab up                          # the default scenario
  terrane lab up --scenario two-racks     # a shipped scenario by name, or a file
  terrane lab probe -o json
  terrane lab routes tor-1
  terrane lab add-pod extra --host host-2 --network red
  terrane lab add-vm vm1 --host host-2
  terrane lab down`,
	}
	p := cmd.PersistentFlags()
	p.StringVar(&f.name, "name", "lab", "the lab's name (letters and digits)")
	p.StringVar(&f.dir, "dir", "", "the lab directory (default /run/terrane-lab/NAME)")
	cmd.AddCommand(newLabUpCommand(f), newLabDownCommand(f), newLabProbeCommand(f), newLabRoutesCommand(f),
		newLabStatusCommand(f), newLabAddPodCommand(f), newLabDelPodCommand(f), newLabAddVMCommand(f), newLabRmVMCommand(f), newLabFabricdCommand(f), newLabVPCdCommand(f), newLabK8sBinsCommand(), newLabKubeletCommand(f), newLabEtcdMemberCommand())
	cmd.AddCommand(newLabRealKubeletCommands(f)...)
	cmd.AddCommand(newLabPolicyCommands(f)...)
	return cmd
}

// labContext is the command's context, cancelled by Ctrl-C.
func labContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// probeExit turns failed probes into exit status 1.
func probeExit(r *lab.ProbeReport) error {
	if r != nil && r.Failed() > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d of %d probes failed", r.Failed(), len(r.Results))}
	}
	return nil
}

func newLabUpCommand(f *labFlags) *cobra.Command {
	var scenario, pluginDir, kubelet string
	var agentArgs []string
	var k8s bool
	var nodeGrace time.Duration
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build the lab of a scenario, start its control plane, agents and pods, and probe it",
		Example: `  terrane lab up
  terrane lab up --scenario two-racks
  terrane lab up --name fast --agent-arg=--ebpf --agent-arg=--big-tcp-size=196608
  terrane lab up --k8s --scenario two-networks   # Nodes and Pods in a real kube-apiserver`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, err := f.json()
			if err != nil {
				return err
			}
			if err := lab.CheckEnvironment(); err != nil {
				return err
			}
			sc, _, err := lab.LoadScenario(scenario)
			if err != nil {
				return err
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			if exe, err = filepath.EvalSymlinks(exe); err != nil {
				return err
			}
			ctx, stop := labContext(cmd)
			defer stop()
			start := time.Now()
			bar, err := newProgress(cmd.ErrOrStderr(), "lab up")
			if err != nil {
				return err
			}
			defer bar.Done()
			st, err := lab.Up(ctx, lab.UpOptions{Name: f.name, Dir: f.dir, Scenario: sc, Terrane: exe, PluginDir: pluginDir, Progress: bar.Logf, Meter: bar,
				AgentArgs: agentArgs, K8s: k8s, Kubelet: kubelet, NodeGrace: nodeGrace})
			if err != nil {
				if st != nil {
					err = fmt.Errorf("%w\n(the lab is left as it is for inspection: logs in %s/logs; remove it with `terrane lab down --name %s`)", err, st.Dir, f.name)
				}
				return err
			}
			bar.SetTotal(1)
			bar.Step("probing every pod and VM from every other")
			rep, err := lab.Gather(ctx, st, true)
			if err != nil {
				return err
			}
			bar.Add(1)
			bar.Done() // before the report: stdout and stderr may share the terminal
			rep.Seconds = time.Since(start).Seconds()
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				fmt.Fprint(cmd.OutOrStdout(), rep.Text())
			}
			if len(st.Scenario.Policies) > 0 {
				// Policies deny pairs on purpose: the port matrix says which.
				if !asJSON {
					fmt.Fprintf(cmd.OutOrStdout(), "the scenario's policies deny some pairs on purpose; see them port by port: terrane lab probe --name %s --port 80/TCP --port 81/UDP\n", st.Name)
				}
				return nil
			}
			return probeExit(rep.Probe)
		},
	}
	cmd.Flags().StringVar(&scenario, "scenario", "", "a scenario file, or the name of a shipped one ("+strings.Join(lab.Shipped(), ", ")+"); default flat-l2")
	cmd.Flags().StringVar(&pluginDir, "cni-bin-dir", "", "the directory holding terrane-cni (default: next to this binary)")
	cmd.Flags().StringArrayVar(&agentArgs, "agent-arg", nil, "an extra flag for every agent (`terrane agent --help`), e.g. --agent-arg=--big-tcp=false; repeat for several")
	cmd.Flags().BoolVar(&k8s, "k8s", false, "run a real kube-apiserver: every host a Node, the server on the Kubernetes store with the Node and Namespace controllers, pods as Pod objects wired by a kubelet; prints a kubeconfig for kubectl (the first run builds the binaries: about 6 minutes, then cached)")
	cmd.Flags().StringVar(&kubelet, "kubelet", lab.KubeletLab, "with --k8s: what wires the Pods: lab (the lab's own kubelet: pod namespaces and libcni, seconds) or real (kubelet and containerd per host)")
	cmd.Flags().DurationVar(&nodeGrace, "node-grace", lab.DefaultNodeGrace, "with --k8s: how long the server keeps a deleted Node's host and its blocks (--kube-node-grace)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "text or json")
	return cmd
}

func newLabDownCommand(f *labFlags) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove every namespace, link, process and file the lab made",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.CheckEnvironment(); err != nil {
				return err
			}
			ctx, stop := labContext(cmd)
			defer stop()
			rep, err := lab.Down(ctx, lab.DownOptions{Name: f.name, Dir: f.dir, All: all})
			what := "lab " + f.name
			if all {
				what = "every lab"
			}
			if rep.Empty() && err == nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: nothing to remove\n", what)
				return nil
			}
			dirs := "no directory"
			if len(rep.Dirs) > 0 {
				dirs = strings.Join(rep.Dirs, ", ")
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: stopped %d processes, deleted %d namespaces, removed %s\n",
				what, len(rep.Killed), len(rep.Netns), dirs)
			return err
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "remove every lab (every terrane-lab-* namespace and /run/terrane-lab/*)")
	return cmd
}

// running checks the output flag and the environment and loads the state
// of the running lab: what every command on a running lab starts with.
func (f *labFlags) running() (asJSON bool, st *lab.State, err error) {
	if asJSON, err = f.json(); err != nil {
		return false, nil, err
	}
	if err = lab.CheckEnvironment(); err != nil {
		return false, nil, err
	}
	st, err = lab.LoadState(f.name, f.labDir())
	return asJSON, st, err
}

func newLabProbeCommand(f *labFlags) *cobra.Command {
	var ports []string
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Probe every pod and VM from every other with TCP and ICMP; exit 1 if any pair fails",
		Long: `Without --port: every pod and VM probes every other with TCP and ICMP, and
the command exits 1 if any pair fails.

With --port (repeat it): every ordered pair of pods, each pod with itself
included, on each port: PORT/PROTOCOL (80/TCP, 81/UDP) or a port name the
destination pod serves (serve-80-tcp, from the scenario's pods' ports). Each pod
answers on each port with its name; a denied probe times out (400 ms, two
tries), and all run in parallel. This is how network policy is checked: the
result is the matrix, and the exit status is 0 whatever it holds.`,
		Example: `  terrane lab probe
  terrane lab probe --port 80/TCP --port 81/UDP --port serve-80-tcp -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var specs []lab.PortSpec
			for _, p := range ports {
				spec, err := lab.ParsePortSpec(p)
				if err != nil {
					return err
				}
				specs = append(specs, spec)
			}
			asJSON, st, err := f.running()
			if err != nil {
				return err
			}
			ctx, stop := labContext(cmd)
			defer stop()
			if len(specs) > 0 {
				rep, err := lab.ProbePorts(ctx, st.PortTargets(), specs)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(cmd.OutOrStdout(), rep)
				}
				_, err = fmt.Fprint(cmd.OutOrStdout(), rep.Matrix())
				return err
			}
			rep, err := lab.Probe(ctx, st.Targets())
			if err != nil {
				return err
			}
			if asJSON {
				err = writeJSON(cmd.OutOrStdout(), rep)
			} else {
				_, err = fmt.Fprint(cmd.OutOrStdout(), rep.Matrix())
			}
			if err != nil {
				return err
			}
			return probeExit(rep)
		},
	}
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "text or json")
	cmd.Flags().StringArrayVar(&ports, "port", nil, "probe every ordered pair of pods on PORT/PROTOCOL or a named port; repeat for several")
	return cmd
}

func newLabRoutesCommand(f *labFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "routes NODE",
		Short: "Show a host's, router's, pod's or VM's rules and routes (every table but local); a BGP router's BIRD or FRR sessions and table too",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, st, err := f.running()
			if err != nil {
				return err
			}
			nd, err := st.Node(args[0])
			if err != nil {
				return err
			}
			nr, err := st.ReadNode(cmd.Context(), nd)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), nr)
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), nr.Text())
			return err
		},
	}
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "text or json")
	return cmd
}

func newLabStatusCommand(f *labFlags) *cobra.Command {
	var probe bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a running lab: topology, prefixes, blocks, pods, VMs and routes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, st, err := f.running()
			if err != nil {
				return err
			}
			ctx, stop := labContext(cmd)
			defer stop()
			rep, err := lab.Gather(ctx, st, probe)
			if err != nil {
				return err
			}
			if asJSON {
				err = writeJSON(cmd.OutOrStdout(), rep)
			} else {
				_, err = fmt.Fprint(cmd.OutOrStdout(), rep.Text())
			}
			if err != nil {
				return err
			}
			return probeExit(rep.Probe)
		},
	}
	cmd.Flags().BoolVar(&probe, "probe", false, "also probe every pod and VM from every other")
	cmd.Flags().StringVarP(&f.output, "output", "o", "text", "text or json")
	return cmd
}

func newLabAddPodCommand(f *labFlags) *cobra.Command {
	var (
		pod         lab.Pod
		network     string
		annotations []string
		labels      []string
	)
	cmd := &cobra.Command{
		Use:   "add-pod NAME --host HOST",
		Short: "Create one more pod on a host, through libcni",
		Long: `Create one more pod on a host, through libcni, then wait until the routers
carry the routes it changed. With the server down the pod is still made from
its host's blocks; add-pod then says the server is unreachable and does not
wait for the routers.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := f.json()
			if err != nil {
				return err
			}
			if err := lab.CheckEnvironment(); err != nil {
				return err
			}
			pod.Name = args[0]
			pod.Annotations = map[string]string{}
			for _, a := range annotations {
				k, v, ok := strings.Cut(a, "=")
				if !ok {
					return fmt.Errorf("--annotation %q: want key=value", a)
				}
				pod.Annotations[k] = v
			}
			if network != "" {
				pod.Annotations[lab.NetworkAnnotation] = network
			}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok {
					return fmt.Errorf("--label %q: want key=value", l)
				}
				if pod.Labels == nil {
					pod.Labels = map[string]string{}
				}
				pod.Labels[k] = v
			}
			ctx, stop := labContext(cmd)
			defer stop()
			// One line on stderr says whether it waited for the routers
			// (it does not when the server is unreachable).
			say := func(format string, args ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", args...) }
			ps, err := lab.AddPodSaying(ctx, f.name, f.labDir(), pod, say)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), ps)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pod %s on %s: %s (netns %s)\n", ps.Name, ps.Host, ps.Addr(), ps.Netns)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&pod.Host, "host", "", "the host the pod runs on (required)")
	fl.StringVar(&pod.Namespace, "namespace", "default", "the pod's Kubernetes namespace")
	fl.StringVar(&network, "network", "", "the Terrane network (sets the annotation "+lab.NetworkAnnotation+")")
	fl.StringArrayVar(&annotations, "annotation", nil, "a pod annotation key=value (repeatable)")
	fl.StringArrayVar(&labels, "label", nil, "a pod label key=value, for policy selectors (repeatable; a lab that enforces policy)")
	fl.StringVarP(&f.output, "output", "o", "text", "text or json")
	return cmd
}

func newLabDelPodCommand(f *labFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "del-pod NAME",
		Short: "Delete a pod (CNI DEL on its host, then its namespace)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := lab.CheckEnvironment(); err != nil {
				return err
			}
			ctx, stop := labContext(cmd)
			defer stop()
			if err := lab.DelPod(ctx, f.name, f.labDir(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pod %s deleted\n", args[0])
			return nil
		},
	}
}

func newLabFabricdCommand(f *labFlags) *cobra.Command {
	return newLabDaemonCommand(f, "fabricd", "Keep the lab's router routes equal to the server's state (started by lab up)", lab.RunFabric)
}

func newLabKubeletCommand(f *labFlags) *cobra.Command {
	return newLabDaemonCommand(f, "kubelet", "Wire the lab's Pods as a kubelet would (started by lab up --k8s)", lab.RunKubelet)
}

func newLabVPCdCommand(f *labFlags) *cobra.Command {
	return newLabDaemonCommand(f, "vpcd", "Serve the lab's fake EC2 and mirror its route table into the vpc router (started by lab up)", lab.RunVPC)
}

// newLabDaemonCommand is a hidden command lab up starts: run until
// Ctrl-C or SIGTERM, logging to stderr.
func newLabDaemonCommand(f *labFlags, use, short string, run func(ctx context.Context, name, dir string, log *slog.Logger) error) *cobra.Command {
	return &cobra.Command{
		Use:    use,
		Short:  short,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := labContext(cmd)
			defer stop()
			log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("lab", f.name)
			return run(ctx, f.name, f.labDir(), log)
		},
	}
}
