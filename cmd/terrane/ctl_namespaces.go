package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
)

func newCtlNamespacesCommand(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "namespaces",
		Short: "A namespace's own default network (Kubernetes: its annotation terrane.io/network)",
		Long: `A namespace may have a default network of its own: its pods (and VM ports
allocated in it) get addresses there unless they ask for another network,
before the topology's default networks. The network must admit the namespace.`,
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the namespaces that have their own default network",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				nss, err := c.Namespaces(ctx)
				if err != nil {
					return err
				}
				return o.show(cmd, api.NamespaceList{Namespaces: nss}, func(w io.Writer) {
					fmt.Fprintln(w, "NAMESPACE\tNETWORK")
					for _, ns := range slices.Sorted(maps.Keys(nss)) {
						fmt.Fprintf(w, "%s\t%s\n", ns, nss[ns])
					}
				})
			})
		},
	}
	set := &cobra.Command{
		Use:     "set NAMESPACE NETWORK",
		Short:   "Make NETWORK the default of NAMESPACE (admin)",
		Example: `  terrane ctl namespaces set payments secure`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				ch, err := c.SetNamespaceNetwork(ctx, args[0], args[1])
				if err != nil {
					return err
				}
				return o.show(cmd, api.Changes{Changes: ch}, func(w io.Writer) {
					fmt.Fprintf(w, "namespace %s defaults to network %s\n", args[0], args[1])
				})
			})
		},
	}
	unset := &cobra.Command{
		Use:   "unset NAMESPACE",
		Short: "Clear NAMESPACE's own default network (admin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				ch, err := c.SetNamespaceNetwork(ctx, args[0], "")
				if err != nil {
					return err
				}
				return o.show(cmd, api.Changes{Changes: ch}, func(w io.Writer) {
					fmt.Fprintf(w, "namespace %s uses the topology's default networks\n", args[0])
				})
			})
		},
	}
	cmd.AddCommand(list, set, unset)
	return cmd
}
