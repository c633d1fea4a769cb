package main

import (
	"fmt"
	"io"
	"os"

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
			var data []byte
			if args[0] == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(args[0])
			}
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
	pol.AddCommand(apply, del, newLabPolicyCasesCommand(f))
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
