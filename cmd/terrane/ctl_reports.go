package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
)

func newCtlUtilisationCommand(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "utilisation",
		Aliases: []string{"utilization"},
		Short:   "Addresses, blocks and routes per network and group",
		Long: `utilisation reports for each network the hosts, blocks and endpoint
addresses against its capacity and the route counts against their budgets, and
for each group its prefixes and what is allocated inside them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				rep, err := c.Utilisation(ctx)
				if err != nil {
					return err
				}
				return o.show(cmd, rep, func(w io.Writer) { printUtilisation(w, rep) })
			})
		},
	}
}

func printUtilisation(w io.Writer, rep *api.Report) {
	fmt.Fprintln(w, "NETWORK\tCIDR\tHOSTS\tBLOCKS\tALLOCATED\tCAPACITY\tUSED\tBGP ROUTES\tVPC ROUTES")
	for _, n := range rep.Networks {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%d/%s\t%d/%s\n", n.Name, n.CIDR, n.Hosts, n.Blocks, n.Allocated, n.Capacity,
			percent(n.UsableShare), n.Routes.BGP, budgetString(n.Routes.BGPBudget), n.Routes.VPC, budgetString(n.Routes.VPCBudget))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "NETWORK\tGROUP\tPREFIXES\tADDRESSES\tHOSTS\tBLOCKS\tALLOCATED")
	for _, n := range rep.Networks {
		for _, g := range n.Groups {
			prefixes := strings.Join(g.Prefixes, ",")
			if len(g.Prefixes) > 4 {
				prefixes = strings.Join(g.Prefixes[:4], ",") + fmt.Sprintf(" (+%d)", len(g.Prefixes)-4)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", n.Name, g.Path, orDash(prefixes), g.Assignable, g.Hosts, g.Blocks, g.Allocated)
		}
	}
}

func newCtlCheckCommand(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "Check the stored state for overlaps, blocks outside their group and orphans",
		Long: `check asks the server for a consistency report of the state it holds: group
prefixes outside their network or overlapping, blocks outside their host's
group, orphaned blocks and endpoints — each finding with what it means.
Admin only.

Exit status: 0 clean; 1 findings (listed one per line); 2 the check could not
run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				rep, err := c.Check(ctx)
				if err != nil {
					return err
				}
				err = o.show(cmd, rep, func(w io.Writer) {
					if rep.Clean {
						fmt.Fprintln(w, "clean: no overlaps, no blocks outside their group, no orphans")
						return
					}
					for _, f := range rep.Findings {
						fmt.Fprintln(w, finding(f.Kind, f.Network, f.Subject, f.Detail))
					}
				})
				if err == nil && !rep.Clean {
					err = &exitError{code: 1, err: fmt.Errorf("check found %d problems", len(rep.Findings))}
				}
				return err
			})
		},
	}
}

// percent shows a share; a little is never shown as nothing.
func percent(share float64) string {
	if share > 0 && share < 0.0001 {
		return "<0.01%"
	}
	return fmt.Sprintf("%.2f%%", 100*share)
}
