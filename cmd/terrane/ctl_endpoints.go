package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
)

func newCtlEndpointsCommand(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "endpoints",
		Short: "List, allocate and release endpoint addresses (VM ports)",
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the allocated endpoints",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				eps, err := c.Endpoints(ctx)
				if err != nil {
					return err
				}
				return o.show(cmd, map[string]any{"endpoints": eps}, func(w io.Writer) {
					fmt.Fprintln(w, "ID\tNETWORK\tHOST\tNAMESPACE\tADDRESS\tBLOCK")
					for _, e := range eps {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Network, e.Host, orDash(e.Namespace), e.Addr, e.Block)
					}
				})
			})
		},
	}

	explain := &cobra.Command{
		Use:   "explain ADDR",
		Short: "Say why an address is allocated: who holds it, on which host, since when, through CNI or the API",
		Long: `explain answers "why is this address allocated": every endpoint holding it —
a pod (handed out by its host's agent, the CNI path) or a VM port (handed out
by the server, the API path) — with its host, block and since when; where the
address lies (network, group, block and whose block it is); and what check
finds about it or its block.`,
		Example: `  terrane ctl endpoints explain 10.10.0.3
  terrane ctl endpoints explain 10.10.0.3 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := netip.ParseAddr(args[0])
			if err != nil {
				return fmt.Errorf("ADDR %q is not an IP address", args[0])
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				ex, err := c.Explain(ctx, addr)
				if err != nil {
					return err
				}
				return o.show(cmd, ex, func(w io.Writer) {
					if len(ex.Holders) == 0 {
						fmt.Fprintf(w, "%s is free: nobody holds it\n", ex.Addr)
					}
					for _, h := range ex.Holders {
						fmt.Fprintf(w, "%s is held by %s, in network %s, block %s\n", ex.Addr, h, h.Network, h.Block)
					}
					for _, pl := range ex.Places {
						owner := "claimed by no host"
						if pl.Host != "" {
							owner = fmt.Sprintf("host %s's, issued by the %s", pl.Host, pl.Issuer)
						}
						fmt.Fprintf(w, "network %s: group %s, block %s (%s)\n", pl.Network, orDash(pl.Group), pl.Block, owner)
					}
					for _, f := range ex.Findings {
						fmt.Fprintln(w, "finding: "+finding(f.Kind, f.Network, f.Subject, f.Detail))
					}
				})
			})
		},
	}

	var (
		req  api.EndpointRequest
		addr string
	)
	allocate := &cobra.Command{
		Use:   "allocate --id ID --host HOST [--network NAME] [--namespace NS] [--addr IP]",
		Short: "Give an endpoint (a VM port) an address on its host",
		Long: `allocate gives the endpoint named --id an address inside a block of --host,
on --network (default: the namespace's default network). --addr asks for a
particular address in the host's group. Asking again with the same --id
returns the same address: safe to retry. This is the OpenStack provider-network
path: the port ID as --id, the hypervisor as --host.`,
		Example: `  terrane ctl endpoints allocate --id 5f2c-port --host n1 --network vms --namespace openstack`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if addr != "" {
				a, err := netip.ParseAddr(addr)
				if err != nil {
					return fmt.Errorf("--addr %q is not an IP address", addr)
				}
				req.Addr = a
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				res, err := c.AllocateEndpoint(ctx, req)
				if err != nil {
					return err
				}
				e := res.Endpoint
				return o.show(cmd, res, func(w io.Writer) {
					verb := "allocated"
					if !res.Created {
						verb = "already allocated:"
					}
					fmt.Fprintf(w, "%s %s to endpoint %s on network %s, host %s (block %s)\n", verb, e.Addr, e.ID, e.Network, e.Host, e.Block)
				})
			})
		},
	}
	f := allocate.Flags()
	f.StringVar(&req.ID, "id", "", "the endpoint's stable name, e.g. the VM port ID (required)")
	f.StringVar(&req.Host, "host", "", "the host the endpoint lives on (required)")
	f.StringVar(&req.Network, "network", "", "the network (default: the namespace's default)")
	f.StringVar(&req.Namespace, "namespace", "", "the endpoint's namespace, which chooses the networks it may use")
	f.StringVar(&addr, "addr", "", "a particular address to allocate")
	_ = allocate.MarkFlagRequired("id")
	_ = allocate.MarkFlagRequired("host")

	release := &cobra.Command{
		Use:   "release ID",
		Short: "Release an endpoint's address",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				changes, err := c.ReleaseEndpoint(ctx, args[0])
				if err != nil {
					return err
				}
				return o.show(cmd, map[string]any{"changes": changes}, func(w io.Writer) {
					if len(changes) == 0 {
						fmt.Fprintf(w, "endpoint %s holds no address: nothing to release\n", args[0])
						return
					}
					fmt.Fprintf(w, "released endpoint %s\n", args[0])
				})
			})
		},
	}
	cmd.AddCommand(list, allocate, release, explain)
	return cmd
}
