package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/plan"
	"github.com/terrane-net/terrane/internal/topology"
)

func newPlanCommand() *cobra.Command {
	var (
		topoFile, hostsFile, budgets, mode, output, htmlFile string
		podsPerHost                                          int
		fill                                                 bool
		skew                                                 float64
	)
	tf := &treeFlags{}
	cmd := &cobra.Command{
		Use:   "plan --topology FILE [flags]",
		Short: "Simulate a topology: prefixes, blocks, utilisation and routes against their budgets",
		Long: `plan loads a topology (Terrane YAML/JSON or Romana v2 JSON), lets hosts join,
allocates endpoints, and prints per network the group prefixes, hosts, blocks,
utilisation, and the route count at each level (host, ToR over BGP, VPC table)
against its budget — before anything is deployed.

Without --hosts, one synthetic host joins each leaf group (with the labels the
group's selectors ask for), plus any hosts the topology lists by name.

Exit status: 0 the plan fits; 1 a route budget is exceeded or the endpoints do
not fit; 2 the input is invalid or a host is admitted by no group.`,
		Example: `  # How far does the network go when 80% of pods land in one zone?
  terrane plan --topology examples/aws-3zone.yaml --fill --skew 0.8

  # 30 pods on each of your hosts, VPC table limited to 20 routes, as JSON
  terrane plan --topology examples/aws-3zone.yaml --hosts hosts.yaml \
      --pods-per-host 30 --route-budget vpc=20 -o json

  # The tree of groups with utilisation bars, after a fill
  terrane plan --topology examples/l3-fabric-4rack.yaml --fill --tree

  # Romana's static split, for comparison
  terrane plan --topology examples/region-6zone.romana.json --fill --mode static`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			usage := func(err error) error { return &exitError{code: 2, err: err} }
			if topoFile == "" {
				return usage(fmt.Errorf("--topology is required: a topology file such as examples/flat-l2.yaml"))
			}
			if output != "table" && output != "json" {
				return usage(fmt.Errorf("-o %q: use table or json", output))
			}
			if err := tf.check(output); err != nil {
				return usage(err)
			}
			if fill && cmd.Flags().Changed("pods-per-host") {
				return usage(fmt.Errorf("--fill and --pods-per-host exclude each other: fill allocates until the first failure"))
			}
			pm, err := ipam.ParsePlanMode(mode)
			if err != nil {
				return usage(fmt.Errorf("--mode: %w", err))
			}
			b, err := parseBudgets(budgets)
			if err != nil {
				return usage(err)
			}
			data, err := os.ReadFile(topoFile)
			if err != nil {
				return usage(err)
			}
			topo, err := topology.Load(data)
			if err != nil {
				return usage(fmt.Errorf("%s: %w", topoFile, err))
			}
			var hosts []plan.ParsedHost
			if hostsFile != "" {
				data, err := os.ReadFile(hostsFile)
				if err != nil {
					return usage(err)
				}
				if hosts, err = plan.ParseHosts(data); err != nil {
					return usage(fmt.Errorf("%s: %w", hostsFile, err))
				}
			}
			bar, err := newPlanProgress(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			rep, al, err := plan.Simulate(topo, hosts, plan.Options{Mode: pm, Budgets: b, PodsPerHost: podsPerHost, Fill: fill, Skew: skew, Meter: bar})
			bar.Done()
			if err != nil {
				return usage(err)
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else if tf.tree {
				tf.print(out, rep)
			} else {
				printPlan(out, rep)
			}
			if htmlFile != "" {
				// Also when the plan does not fit: the page shows where.
				if err := writePlanHTML(htmlFile, topoFile, rep, al); err != nil {
					return &exitError{code: 2, err: fmt.Errorf("--html %s: %w", htmlFile, err)}
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote the topology page to %s\n", htmlFile)
			}
			if !rep.Fits {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&topoFile, "topology", "", "topology file: Terrane YAML/JSON or Romana v2 JSON (required)")
	f.StringVar(&hostsFile, "hosts", "", "YAML or JSON list of hosts {name, ip, labels}; default: one synthetic host per leaf group")
	f.IntVar(&podsPerHost, "pods-per-host", 10, "endpoints to allocate on every host in every network")
	f.BoolVar(&fill, "fill", false, "allocate until the first failure and report the usable share")
	f.Float64Var(&skew, "skew", 0, "share (0..1) of endpoints sent to the first leaf group; the rest spread evenly")
	f.StringVar(&budgets, "route-budget", "", fmt.Sprintf("route budgets overriding the defaults (vpc=%d, bgp unbounded), e.g. vpc=20,bgp=200; 0 = unbounded", plan.DefaultVPCBudget))
	f.StringVar(&mode, "mode", "elastic", "group prefix planning: elastic (grow on demand) or static (Romana's fixed split)")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.StringVar(&htmlFile, "html", "", "also write the topology page of the simulated state to FILE (open it in a browser; no server needed)")
	tf.register(f)
	return cmd
}

// parseBudgets parses "vpc=N,bgp=N": the targets given override the
// defaults (vpc=50, bgp unbounded); each may be given once.
func parseBudgets(s string) (ipam.Budgets, error) {
	b := ipam.Budgets{VPC: plan.DefaultVPCBudget}
	if strings.TrimSpace(s) == "" {
		return b, nil
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 0 {
			return b, fmt.Errorf("--route-budget %q: want target=count pairs such as vpc=50,bgp=200", s)
		}
		if seen[k] {
			return b, fmt.Errorf("--route-budget %q: %s is given twice", s, k)
		}
		seen[k] = true
		switch k {
		case "vpc":
			b.VPC = n
		case "bgp":
			b.BGP = n
		default:
			return b, fmt.Errorf("--route-budget: unknown target %q; use vpc or bgp", k)
		}
	}
	return b, nil
}

func printPlan(w io.Writer, rep *plan.Report) {
	for i, n := range rep.Networks {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "NETWORK %s  %s  blocks /%d  mode %s\n", n.Name, n.CIDR, n.BlockSize, rep.Mode)
		fmt.Fprintf(w, "  hosts %d  blocks %d  allocated %d of %d (%.2f%%)\n", n.Hosts, n.Blocks, n.Allocated, n.Capacity, 100*n.UsableShare)
		fmt.Fprintf(w, "  routes: host max %d (optimum %d)  bgp %d (optimum %d, budget %s)  vpc %d (optimum %d, budget %s, direct %.0f%%)\n",
			n.Routes.HostMax, n.Routes.HostMaxOptimal, n.Routes.BGP, n.Routes.BGPOptimal, budgetString(n.Routes.BGPBudget),
			n.Routes.VPC, n.Routes.VPCFloor, budgetString(n.Routes.VPCBudget), 100*n.Routes.VPCDirectShare)
		if n.FirstFailure != "" {
			fmt.Fprintf(w, "  first failure: %s\n", n.FirstFailure)
		}
		if n.BudgetGroup != "" {
			fmt.Fprintf(w, "  pays for the %s budget: group %s (refused before a block that would break the budget)\n", n.BudgetTarget, n.BudgetGroup)
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  GROUP\tMODE\tPREFIXES\tADDRESSES\tHOSTS\tBLOCKS\tALLOCATED")
		for _, g := range n.Groups {
			prefixes := strings.Join(g.Prefixes, ",")
			if len(g.Prefixes) > 4 {
				prefixes = strings.Join(g.Prefixes[:4], ",") + fmt.Sprintf(" (+%d)", len(g.Prefixes)-4)
			}
			if prefixes == "" {
				prefixes = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%d\t%d\n", g.Path, g.Mode, prefixes, g.Assignable, g.Hosts, g.Blocks, g.Allocated)
		}
		tw.Flush()
	}
	printFits(w, rep)
}

func budgetString(n int) string {
	if n <= 0 {
		return "none"
	}
	return strconv.Itoa(n)
}

// printFits ends a plan's table or tree: whether it fits, and why not.
func printFits(w io.Writer, rep *plan.Report) {
	if rep.Fits {
		fmt.Fprintln(w, "\nfits: yes")
	} else {
		fmt.Fprintln(w, "\nfits: NO")
		for _, e := range rep.Errors {
			fmt.Fprintln(w, "  -", e)
		}
	}
}
