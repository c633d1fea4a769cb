package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/k8sbins"
)

// newLabK8sBinsCommand builds the Kubernetes binaries (what
// scripts/k8s-bins.sh runs): progress on stderr, the directory on the
// last line of stdout.
func newLabK8sBinsCommand() *cobra.Command {
	var kubelet bool
	cmd := &cobra.Command{
		Use:   "k8s-bins",
		Short: "Build the Kubernetes binaries the lab and the tests run (etcd, kube-apiserver, kubectl; --kubelet too) into their cache",
		Long: `k8s-bins builds etcd, kube-apiserver and kubectl (and kubelet with --kubelet)
from the Go module proxy into ` + k8sbins.CacheRoot + `/<kubernetes>-etcd<etcd>
(or $` + k8sbins.DirEnv + `), only those missing, and prints the directory on its last
line. A cold build takes about 6 minutes (8 with kubelet) and 3 GB of memory on
2 cores; a warm cache, nothing. K8S_VERSION and ETCD_VERSION pick other
releases (default ` + k8sbins.KubernetesVersion + `, ` + k8sbins.EtcdVersion + `).`,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := labContext(cmd)
			defer stop()
			bins := k8sbins.ControlPlane
			if kubelet {
				bins = append(bins, k8sbins.Kubelet)
			}
			stderr := cmd.ErrOrStderr()
			built := false
			dir, err := k8sbins.Ensure(ctx, k8sbins.Options{
				Kubernetes: os.Getenv("K8S_VERSION"), Etcd: os.Getenv("ETCD_VERSION"), Binaries: bins,
				Progress: func(line string) { built = true; fmt.Fprintln(stderr, line) },
			})
			if err != nil {
				return err
			}
			if !built {
				fmt.Fprintf(stderr, "k8s-bins: %s already in %s\n", strings.Join(bins, ", "), dir)
			}
			fmt.Fprintln(cmd.OutOrStdout(), dir)
			return nil
		},
	}
	cmd.Flags().BoolVar(&kubelet, "kubelet", false, "build kubelet too (for --kubelet real)")
	return cmd
}
