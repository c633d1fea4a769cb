package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/ipam"
)

func newCtlHostsCommand(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hosts",
		Short: "List, register and remove hosts",
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the registered hosts with their labels and groups",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				hosts, err := c.Hosts(ctx)
				if err != nil {
					return err
				}
				return o.show(cmd, map[string]any{"hosts": hosts}, func(w io.Writer) {
					fmt.Fprintln(w, "NAME\tIP\tLABELS\tGROUPS")
					for _, h := range hosts {
						ip := "-"
						if h.IP.IsValid() {
							ip = h.IP.String()
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", h.Name, ip, joinMap(h.Labels, "="), joinMap(h.Groups, ":"))
					}
				})
			})
		},
	}

	var (
		ip, ip6 string
		labels  []string
	)
	register := &cobra.Command{
		Use:   "register NAME --ip IP --label KEY=VALUE...",
		Short: "Register a host (or update its IP and labels); its labels choose its group",
		Long: `register adds a host under its name, with its IP address and the labels the
topology's group selectors match (e.g. rack=1). Registering again updates the
IP and labels; a host whose labels move it to another group takes its new
addresses there, and its blocks in the old group stay (and stay routed) until
they are empty. A node identity may register only itself, and only an admin
may change a registered host's labels or IP.`,
		Example: `  terrane ctl hosts register n1 --ip 192.0.2.1 --label rack=1 --label zone=a`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := api.HostRequest{Labels: map[string]string{}}
			if ip != "" {
				a, err := netip.ParseAddr(ip)
				if err != nil {
					return fmt.Errorf("--ip %q is not an IP address", ip)
				}
				req.IP = a
			}
			if ip6 != "" {
				a, err := netip.ParseAddr(ip6)
				if err != nil || !a.Is6() {
					return fmt.Errorf("--ip6 %q is not an IPv6 address", ip6)
				}
				req.IP6 = a
			}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return fmt.Errorf("--label %q: want KEY=VALUE, e.g. rack=1", l)
				}
				req.Labels[k] = v
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				res, err := c.RegisterHost(ctx, args[0], req)
				if err != nil {
					return err
				}
				return o.show(cmd, res, func(w io.Writer) {
					fmt.Fprintf(w, "registered host %s", res.Host.Name)
					if res.Host.IP.IsValid() {
						fmt.Fprintf(w, " (%s)", res.Host.IP)
					}
					fmt.Fprintf(w, " in %s; %s\n", joinMap(res.Host.Groups, ":"), changeCount(res.Changes))
				})
			})
		},
	}
	register.Flags().StringVar(&ip, "ip", "", "the host's IP address (the next hop towards its endpoints)")
	register.Flags().StringVar(&ip6, "ip6", "", "the host's IPv6 address beside an IPv4 --ip (the next hop towards its IPv6 endpoints)")
	register.Flags().StringArrayVar(&labels, "label", nil, "a label KEY=VALUE; repeat for more")

	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a host (admin only)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				changes, err := c.RemoveHost(ctx, args[0])
				if err != nil {
					return err
				}
				return o.show(cmd, map[string]any{"changes": changes}, func(w io.Writer) {
					fmt.Fprintf(w, "removed host %s; %s\n", args[0], changeCount(changes))
				})
			})
		},
	}
	cmd.AddCommand(list, register, remove)
	return cmd
}

func newCtlBlocksCommand(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "blocks",
		Short: "List, claim and release hosts' address blocks",
	}
	var network string
	list := &cobra.Command{
		Use:   "list [--network NAME]",
		Short: "List the claimed blocks, who issues addresses from each, and how many are in use",
		Long: `list shows every claimed block: its host and group, its issuer — the host's
agent (pods, through CNI) or the server (VM ports, through the API) — and USED,
the addresses in use in it: the server's endpoints in its blocks, and in an
agent's block what the agent last reported (about a second behind a change, at
most 10 s behind while pods keep coming).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				blocks, err := c.Blocks(ctx, network)
				if err != nil {
					return err
				}
				if network != "" {
					if _, ok := blocks[network]; !ok {
						return fmt.Errorf("the topology has no network %q", network)
					}
				}
				return o.show(cmd, map[string]any{"blocks": blocks}, func(w io.Writer) {
					fmt.Fprintln(w, "NETWORK\tBLOCK\tHOST\tGROUP\tISSUER\tUSED")
					for _, n := range slices.Sorted(maps.Keys(blocks)) {
						for _, b := range blocks[n] {
							fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\n", n, b.Prefix, b.Host, b.Group, b.Issuer, b.Used)
						}
					}
				})
			})
		},
	}
	list.Flags().StringVar(&network, "network", "", "only this network's blocks")

	var claimNetwork string
	claim := &cobra.Command{
		Use:     "claim HOST --network NAME",
		Short:   "Claim a block for a host in its group's prefixes",
		Example: `  terrane ctl blocks claim n1 --network pods`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				res, err := c.ClaimBlock(ctx, args[0], claimNetwork)
				if err != nil {
					return err
				}
				return o.show(cmd, res, func(w io.Writer) {
					fmt.Fprintf(w, "claimed block %s on network %s for host %s\n", res.Block, claimNetwork, args[0])
				})
			})
		},
	}
	claim.Flags().StringVar(&claimNetwork, "network", "", "the network to claim in (required)")
	_ = claim.MarkFlagRequired("network")

	release := &cobra.Command{
		Use:     "release HOST NETWORK BLOCK",
		Short:   "Release a host's block",
		Example: `  terrane ctl blocks release n1 pods 10.0.0.16/28`,
		Args:    cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := netip.ParsePrefix(args[2])
			if err != nil {
				return fmt.Errorf("block %q: want a prefix such as 10.0.0.16/28", args[2])
			}
			if p.Masked() != p {
				return fmt.Errorf("block %s is not a block prefix: did you mean %s?", p, p.Masked())
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				changes, err := c.ReleaseBlock(ctx, args[0], args[1], p)
				if err != nil {
					return err
				}
				return o.show(cmd, map[string]any{"changes": changes}, func(w io.Writer) {
					fmt.Fprintf(w, "released block %s on network %s from host %s\n", p, args[1], args[0])
				})
			})
		},
	}
	cmd.AddCommand(list, claim, release)
	return cmd
}

func changeCount(changes []ipam.Change) string {
	if len(changes) == 1 {
		return "1 change"
	}
	return fmt.Sprintf("%d changes", len(changes))
}

// joinMap renders a map as sorted k<sep>v pairs.
func joinMap(m map[string]string, sep string) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+sep+m[k])
	}
	return strings.Join(parts, ",")
}
