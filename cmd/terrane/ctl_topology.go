package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/ipam"
)

func newCtlTopologyCommand(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Apply, show and diff the cluster's topology",
	}
	cmd.AddCommand(newCtlTopologyApplyCommand(o, false), newCtlTopologyApplyCommand(o, true), newCtlTopologyGetCommand(o))
	return cmd
}

// newCtlTopologyApplyCommand builds `topology apply`, or with dryRun
// `topology diff`: the same request, never applied.
func newCtlTopologyApplyCommand(o *ctlOptions, diffOnly bool) *cobra.Command {
	var (
		mode, budgets string
		dryRun        bool
	)
	cmd := &cobra.Command{
		Use:   "apply FILE",
		Short: "Validate a topology, show what changes, and apply it",
		Long: `apply sends a topology file (Terrane YAML/JSON or Romana v2 JSON) to the
server, which validates it, computes which records change, and applies them in
one transaction. The apply names the revision of the topology it replaces (read
first), so a topology someone else applied meanwhile is never overwritten
unseen: get it again and retry.

Changing the topology while addresses are live is allowed when every live block
stays inside its host's group; otherwise nothing changes and the conflicts are
listed, one per line.

--mode and --route-budget default to the applied topology's (elastic, no
budget for the first one). Admin only.`,
		Example: `  terrane ctl topology apply examples/aws-3zone.yaml --route-budget vpc=50
  terrane ctl topology apply topo.yaml --dry-run`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTopologyApply(cmd, o, args[0], mode, budgets, dryRun || diffOnly)
		},
	}
	if diffOnly {
		cmd.Use = "diff FILE"
		cmd.Short = "Show what applying a topology would change, without applying it"
		cmd.Long = `diff is 'apply --dry-run': the server validates the file and lists the
records that would be added (+), changed (~) and removed (-), or the conflicts
with live state that would make the apply fail. Nothing changes.`
		cmd.Example = `  terrane ctl topology diff topo.yaml`
	}
	f := cmd.Flags()
	f.StringVar(&mode, "mode", "", "group prefix planning: elastic or static (default: the applied topology's)")
	f.StringVar(&budgets, "route-budget", "", "route budgets, e.g. vpc=50,bgp=200; 0 = unbounded (default: the applied topology's)")
	if !diffOnly {
		f.BoolVar(&dryRun, "dry-run", false, "only show what would change")
	}
	return cmd
}

func runTopologyApply(cmd *cobra.Command, o *ctlOptions, file, mode, budgets string, dryRun bool) error {
	if mode != "" {
		if _, err := ipam.ParsePlanMode(mode); err != nil {
			return fmt.Errorf("--mode: %w", err)
		}
	}
	b, err := parseBudgets(budgets)
	if err != nil {
		return err
	}
	text, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	return o.call(cmd, func(ctx context.Context, c *client.Client) error {
		req := api.TopologyRequest{Topology: string(text), Mode: mode, Budgets: b, DryRun: dryRun}
		cur, err := c.Topology(ctx)
		switch {
		case errors.Is(err, client.ErrNoTopology):
		case err != nil:
			return err
		default:
			req.Replaces = cur.Revision
			if mode == "" {
				req.Mode = cur.Mode
			}
			if !cmd.Flags().Changed("route-budget") {
				req.Budgets = cur.Budgets
			}
		}
		// A dry run first: an unchanged topology is not written again, and
		// the conflicts of a refused change come back before any write.
		dry := req
		dry.DryRun = true
		res, err := c.ApplyTopology(ctx, dry)
		if err != nil {
			return err
		}
		switch {
		case req.DryRun:
		case res.Writes == 0: // nothing to apply: the topology stays as it is
			res.DryRun, res.Revision = false, res.Replaces
		default:
			if res, err = c.ApplyTopology(ctx, req); err != nil {
				return err
			}
		}
		return o.show(cmd, res, func(w io.Writer) {
			for _, d := range res.Diff {
				fmt.Fprintln(w, d)
			}
			switch {
			case res.Writes == 0:
				fmt.Fprintf(w, "no changes: %s matches the applied topology (revision %d)\n", file, res.Replaces)
			case res.DryRun:
				fmt.Fprintf(w, "dry run: %d record writes; nothing was applied\n", res.Writes)
			case res.Replaces == 0:
				fmt.Fprintf(w, "applied topology revision %d (the first): %d record writes\n", res.Revision, res.Writes)
			default:
				fmt.Fprintf(w, "applied topology revision %d, replacing revision %d: %d record writes\n", res.Revision, res.Replaces, res.Writes)
			}
		})
	})
}

func newCtlTopologyGetCommand(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "get",
		Short: "Print the applied topology file",
		Long: `get prints the applied topology as it was written, so that
'terrane ctl topology get > topo.yaml' gives a file to edit and apply again; the
revision, mode and route budgets go to stderr. -o json prints them all.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				t, err := c.Topology(ctx)
				if err != nil {
					return err
				}
				if o.output == "json" {
					return o.show(cmd, t, nil)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "# topology revision %d, mode %s, route budgets vpc=%s bgp=%s\n",
					t.Revision, t.Mode, budgetString(t.Budgets.VPC), budgetString(t.Budgets.BGP))
				_, err = io.WriteString(cmd.OutOrStdout(), t.Topology)
				return err
			})
		},
	}
}
