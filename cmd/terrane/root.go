package main

import (
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "terrane",
		Short: "Topology-aware IPAM and routed pod networking, without an overlay",
		Long: `Terrane gives every pod or VM an address that says where it is: networks are
split into group prefixes (zone → rack), hosts claim small blocks inside their
group's prefixes, and endpoints get addresses inside their host's blocks. Routes
therefore aggregate: one route per L2 peer, a few BGP aggregates per rack, a
handful of routes in a cloud VPC table — never one route per pod, never an
overlay.

Start with the planner on a shipped example:

  terrane plan --topology examples/aws-3zone.yaml --fill --skew 0.8`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(newPlanCommand())
	root.AddCommand(newServerCommand())
	root.AddCommand(newCtlCommand())
	root.AddCommand(newBenchCommand())
	root.AddCommand(newAgentCommand())
	root.AddCommand(newLabCommand())
	root.AddCommand(newImageCommand())
	return root
}
