package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

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
	var repair, apply bool
	cmd := &cobra.Command{
		Use:   "check [--repair [--apply]]",
		Short: "Find addresses held twice, outside their blocks, leaked, and other inconsistencies",
		Long: `check asks the server to audit the state it holds together with what every
host's agent last reported (the addresses its pods hold, its pool, the VM ports
it found plugged in). It reports:

  address-twice           an address held by two endpoints (pods and VM ports alike)
  address-outside-blocks  an address in use outside its host's blocks
  block-of-gone-host      a block whose host's agent has stopped reporting
  leak                    an address whose pod or VM port no longer exists
  block-count-mismatch    a block whose agent count disagrees with the addresses in it
  orphan-pod              a pod address whose Pod no longer exists (gone, re-created
                          with another UID, or bound to another node), marked by the
                          server's Pod controller (--kube-pods): since when, and when
                          its release falls due or was asked of the node's agent
and what the state alone can show (group prefixes that overlap or leave their
parent, blocks outside their group). Each finding names the endpoints, host,
network, block and since when. Admin only.

--repair lists what a repair would release: only VM ports proven leaked (the
live agent of their host has not found their device for the grace period).
Nothing else is ever released by a repair. Add --apply to release them.

Exit status: 0 clean; 1 findings; 2 the check could not run.`,
		Example: `  terrane ctl check
  terrane ctl check -o json | jq '.findings[] | select(.kind == "leak")'
  terrane ctl check -o json | jq '.findings[] | select(.kind == "orphan-pod") | {subject, host, since, due}'
  terrane ctl check --repair           # dry run: what would be released
  terrane ctl check --repair --apply   # release the leaked VM ports`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if apply && !repair {
				return fmt.Errorf("--apply releases what --repair finds: give both")
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				if repair {
					res, err := c.Repair(ctx, !apply)
					if err != nil {
						return err
					}
					return o.show(cmd, res, func(w io.Writer) {
						verb := "would release"
						if !res.DryRun {
							verb = "released"
						}
						for _, id := range res.Released {
							fmt.Fprintf(w, "%s leaked VM port %s\n", verb, id)
						}
						if len(res.Released) == 0 {
							fmt.Fprintln(w, "nothing proven leaked: nothing to release")
						} else if res.DryRun {
							fmt.Fprintln(w, "(dry run: add --apply to release)")
						}
						for _, f := range res.Left {
							fmt.Fprintln(w, "left alone: "+finding(f.Kind, f.Network, f.Subject, f.Detail))
						}
					})
				}
				rep, err := c.Check(ctx)
				if err != nil {
					return err
				}
				err = o.show(cmd, rep, func(w io.Writer) {
					if rep.Clean {
						fmt.Fprintln(w, "clean: no address held twice or outside its blocks, no leaks, no gone hosts, no overlaps")
						return
					}
					for _, f := range rep.Findings {
						fmt.Fprintln(w, finding(f.Kind, f.Network, f.Subject, f.Detail))
						if !f.Since.IsZero() {
							fmt.Fprintf(w, "    since %s\n", f.Since.UTC().Format(time.RFC3339))
						}
						if !f.Due.IsZero() {
							fmt.Fprintf(w, "    release due at %s\n", f.Due.UTC().Format(time.RFC3339))
						}
						if f.Release != "" {
							fmt.Fprintf(w, "    repair: releases VM port %s (terrane ctl check --repair --apply)\n", f.Release)
						}
					}
				})
				if err == nil && !rep.Clean {
					err = &exitError{code: 1, err: fmt.Errorf("check found %d problems", len(rep.Findings))}
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "list what a repair releases (VM ports proven leaked); a dry run unless --apply")
	cmd.Flags().BoolVar(&apply, "apply", false, "with --repair: release them")
	return cmd
}

// percent shows a share; a little is never shown as nothing.
func percent(share float64) string {
	if share > 0 && share < 0.0001 {
		return "<0.01%"
	}
	return fmt.Sprintf("%.2f%%", 100*share)
}
