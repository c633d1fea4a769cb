package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/kubenode"
	"github.com/terrane-net/terrane/internal/lab"
)

// newLabRealKubeletCommands are the hidden commands of `lab up --k8s
// --kubelet real`.
func newLabRealKubeletCommands(f *labFlags) []*cobra.Command {
	return []*cobra.Command{
		newLabRuncShimCommand(),
		newLabDaemonCommand(f, "apiproxy", "Relay the lab's API server into every host's namespace (started by lab up --k8s --kubelet real)", lab.RunAPIProxy),
		newLabDaemonCommand(f, "real-pods", "Record the Pods the real kubelets run in the lab's state (started by lab up --k8s --kubelet real)", lab.RunRealPods),
	}
}

// newLabRuncShimCommand is the runc a real lab node's containerd runs
// (through the wrapper script kubenode writes): `terrane lab runc-shim
// RUNC ARGS...` clamps a negative oomScoreAdj, then execs RUNC with ARGS.
func newLabRuncShimCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "runc-shim RUNC [ARGS...]",
		Short:              "Run runc without negative OOM score adjustments (containerd's runc in a real lab node)",
		Hidden:             true,
		DisableFlagParsing: true,
		SilenceUsage:       true,
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) < 1 {
				return fmt.Errorf("runc-shim: want the runc binary, then runc's arguments")
			}
			return kubenode.RuncShim(args[0], args[1:])
		},
	}
}
