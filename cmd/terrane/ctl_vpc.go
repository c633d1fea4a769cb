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

func newCtlVPCCommand(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "vpc",
		Short: "The VPC route reconciler: routes per table against the budget, direct share, errors",
		Long: `vpc shows the VPC route reconciler of the server asked (terrane server
--vpc-config): whether this server is the active one, and for each route table
Terrane's routes against the budget per address family, the share of addresses
routed straight to their owner host, the instances whose source/destination
check is off, and the last error. See docs/vpc.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				st, err := c.VPC(ctx)
				if err != nil {
					return err
				}
				return o.show(cmd, st, func(w io.Writer) { printVPC(w, st) })
			})
		},
	}
}

func printVPC(w io.Writer, st *api.VPCStatus) {
	if !st.Configured {
		fmt.Fprintln(w, "the VPC reconciler is not configured on this server (terrane server --vpc-config FILE)")
		return
	}
	role := "standby"
	if st.Active {
		role = "active"
	}
	fmt.Fprintf(w, "reconciler:\t%s (lease holder %s)\n", role, orDash(st.Holder))
	if !st.LastReconcile.IsZero() {
		fmt.Fprintf(w, "last pass:\t%s at revision %d, took %.3fs\n", st.LastReconcile.Format(time.RFC3339), st.Revision, st.Duration)
	}
	if st.LastError != "" {
		fmt.Fprintf(w, "last error:\t%s\n", st.LastError)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "TABLE\tFAMILY\tROUTES\tBUDGET\tNEEDED\tDIRECT\tINSTANCES\tGROUPS")
	for _, t := range st.Tables {
		groups := strings.Join(t.Groups, ",")
		if groups == "" {
			groups = "all vpc groups"
		}
		for _, f := range t.Families {
			needed := fmt.Sprint(f.Needed)
			if !f.Fits {
				needed += " (over budget)"
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%s\t%d/%d\t%s\n", t.ID, f.Family, f.Routes, f.Budget, needed, percent(f.DirectShare), t.Checked, t.Instances, groups)
		}
	}
	for _, t := range st.Tables {
		if t.RouteLimitHit {
			fmt.Fprintf(w, "%s: the cloud refused routes for the table's route limit (RouteLimitExceeded)\n", t.ID)
		}
		if t.LastError != "" {
			fmt.Fprintf(w, "%s: %s\n", t.ID, t.LastError)
		}
		for _, p := range t.Problems {
			fmt.Fprintf(w, "%s: %s\n", t.ID, p)
		}
	}
}
