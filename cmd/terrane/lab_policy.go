package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/lab"
)

// newLabPolicyCommands are lab policy and lab label: changes to a --k8s
// lab's policies and labels, each returning once every host's agent
// enforces the result.
func newLabPolicyCommands(f *labFlags) []*cobra.Command {
	enforced := func(cmd *cobra.Command, st *lab.State, what string) error {
		d, err := lab.WaitEnforced(cmd.Context(), st)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s; enforced on all %d hosts in %d ms\n", what, len(st.Scenario.Hosts), d.Milliseconds())
		return nil
	}
	pol := &cobra.Command{
		Use:   "policy",
		Short: "Apply or delete NetworkPolicies and ClusterNetworkPolicies in a --k8s lab, waiting until every host enforces them",
	}
	apply := &cobra.Command{
		Use:   "apply FILE",
		Short: "Apply the NetworkPolicies and ClusterNetworkPolicies of a YAML file (--- between documents); nothing is applied if one is invalid",
		Example: `  terrane lab policy apply deny-all.yaml
  terrane lab policy apply - <<EOF
  apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: deny-all, namespace: x}
  spec: {podSelector: {}}
  EOF`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, st, err := f.running()
			if err != nil {
				return err
			}
			data, err := readFileArg(cmd, args[0])
			if err != nil {
				return err
			}
			names, err := lab.ApplyPolicyFile(cmd.Context(), st, data)
			if err != nil {
				return err
			}
			return enforced(cmd, st, fmt.Sprintf("applied %v", names))
		},
	}
	del := &cobra.Command{
		Use:   "delete NAMESPACE/NAME | NAME",
		Short: "Delete a NetworkPolicy (NAMESPACE/NAME) or a ClusterNetworkPolicy (NAME)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, st, err := f.running()
			if err != nil {
				return err
			}
			if err := lab.DeletePolicy(cmd.Context(), st, args[0]); err != nil {
				return err
			}
			return enforced(cmd, st, "deleted "+args[0])
		},
	}
	var count int
	latency := &cobra.Command{
		Use:     "latency NAMESPACE/POD KEY=V1,V2[,...]",
		Short:   "Measure how long a pod's label change takes to be enforced on every host: flip the label COUNT times, print p50, p99 and max",
		Example: `  terrane lab policy latency --name pol y/y-c pod=b,c --count 200`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, st, err := f.running()
			if err != nil {
				return err
			}
			key, vals, ok := strings.Cut(args[1], "=")
			values := strings.Split(vals, ",")
			if !ok || len(values) < 2 {
				return fmt.Errorf("%q: give KEY=V1,V2 (the values the label takes in turn)", args[1])
			}
			lat, err := lab.LabelLatency(cmd.Context(), st, args[0], key, values, count)
			if err != nil {
				return err
			}
			slices.Sort(lat)
			q := func(p int) time.Duration { return lat[min(len(lat)-1, len(lat)*p/100)] }
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"changes": len(lat), "p50_ms": ms(q(50)), "p99_ms": ms(q(99)), "max_ms": ms(lat[len(lat)-1])})
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%d label changes, each enforced on all %d hosts after: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
				len(lat), len(st.Scenario.Hosts), ms(q(50)), ms(q(99)), ms(lat[len(lat)-1]))
			return err
		},
	}
	latency.Flags().IntVar(&count, "count", 100, "how many changes")
	latency.Flags().StringVarP(&f.output, "output", "o", "text", "text or json")
	pol.AddCommand(apply, del, latency, newLabPolicyCasesCommand(f))
	label := &cobra.Command{
		Use:   "label pod NAMESPACE/NAME | namespace NAME  KEY=VALUE... KEY-...",
		Short: "Set or remove labels of a pod or a namespace in a --k8s lab, waiting until every host enforces what they change",
		Example: `  terrane lab label pod x/x-c pod=b
  terrane lab label namespace y team=web tier-`,
		Args: cobra.MinimumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, st, err := f.running()
			if err != nil {
				return err
			}
			if err := lab.Label(cmd.Context(), st, args[0], args[1], args[2:]); err != nil {
				return err
			}
			return enforced(cmd, st, fmt.Sprintf("labelled %s %s %v", args[0], args[1], args[2:]))
		},
	}
	return []*cobra.Command{pol, label}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
