package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/policy/manifest"
)

func newCtlPolicyCommand(o *ctlOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "NetworkPolicies and ClusterNetworkPolicies held by the server, for agents run with --policy server",
		Long: `Without a Kubernetes API (VM ports, bare hosts, the lab), the server holds the
network policy its agents enforce (terrane agent --policy server): the same
NetworkPolicy (networking.k8s.io/v1) and ClusterNetworkPolicy
(policy.networking.k8s.io/v1beta1) objects a cluster would hold, with the
labels of namespaces and workloads (pods by the namespace/name their runtime
gives, VM ports by their ID in namespace default) that selectors match.
Each agent enforces a change within milliseconds; see docs/policy.md.`,
	}
	apply := &cobra.Command{
		Use:   "apply FILE",
		Short: "Create or replace the policies of a YAML file (--- between documents; - reads stdin); nothing is applied if one is invalid (admin)",
		Example: `  terrane ctl policy apply deny-metadata.yaml
  terrane ctl policy apply - <<EOF
  apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: db-from-web, namespace: shop}
  spec:
    podSelector: {matchLabels: {role: db}}
    ingress: [{from: [{podSelector: {matchLabels: {role: web}}}]}]
  EOF`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := readFileArg(cmd, args[0])
			if err != nil {
				return err
			}
			objs, err := manifest.Parse(data)
			if err != nil {
				return err
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				r, err := c.ApplyPolicy(ctx, manifest.Apply(objs))
				if err != nil {
					return err
				}
				return o.show(cmd, r, func(w io.Writer) {
					fmt.Fprintf(w, "applied %s\n", strings.Join(r.Objects, ", "))
				})
			})
		},
	}
	del := &cobra.Command{
		Use:   "delete NAMESPACE/NAME | NAME",
		Short: "Delete a NetworkPolicy (NAMESPACE/NAME) or a ClusterNetworkPolicy (NAME) (admin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			kind := "clusternetworkpolicies"
			if strings.Contains(args[0], "/") {
				kind = "networkpolicies"
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				r, err := c.DeletePolicyObject(ctx, kind, args[0])
				if err != nil {
					return err
				}
				return o.show(cmd, r, func(w io.Writer) { fmt.Fprintf(w, "deleted %s\n", strings.Join(r.Objects, ", ")) })
			})
		},
	}
	get := &cobra.Command{
		Use:   "get",
		Short: "Show the policies, namespaces and workloads the agents compile (-o json: the whole input)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				ps, err := c.Policy(ctx, 0, 0)
				if err != nil {
					return err
				}
				return o.show(cmd, ps, func(w io.Writer) {
					fmt.Fprintln(w, "KIND\tNAME\tNODE\tADDRESSES\tLABELS")
					for _, p := range ps.Cluster.ClusterPolicies {
						fmt.Fprintf(w, "ClusterNetworkPolicy\t%s\t\t\t%s priority %d\n", p.Metadata.Name, p.Spec.Tier, p.Spec.Priority)
					}
					for _, p := range ps.Cluster.Policies {
						fmt.Fprintf(w, "NetworkPolicy\t%s\t\t\t\n", p.Key())
					}
					for _, ns := range ps.Cluster.Namespaces {
						fmt.Fprintf(w, "Namespace\t%s\t\t\t%s\n", ns.Name, joinMap(ns.Labels, "="))
					}
					for _, p := range ps.Cluster.Pods {
						addrs := make([]string, len(p.IPs))
						for i, a := range p.IPs {
							addrs[i] = a.String()
						}
						fmt.Fprintf(w, "Workload\t%s\t%s\t%s\t%s\n", p.Key(), cmp.Or(p.Node, "-"), cmp.Or(strings.Join(addrs, ","), "-"), joinMap(p.Labels, "="))
					}
				})
			})
		},
	}
	cmd.AddCommand(apply, del, get)
	return cmd
}

func newCtlLabelCommand(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "label namespace NAME | workload NAMESPACE/NAME  KEY=VALUE... KEY-...",
		Short: "Set (KEY=VALUE) or remove (KEY-) labels of a namespace or a workload in the server's policy source (admin)",
		Long: `Labels are what NetworkPolicy selectors match, for agents run with
--policy server. A workload is a pod (NAMESPACE/NAME as its runtime names it)
or a VM port (default/ID); its record is made by its first label.`,
		Example: `  terrane ctl label namespace shop team=payments
  terrane ctl label workload default/port-7f3a role=db
  terrane ctl label workload shop/web-1 tier-`,
		Args: cobra.MinimumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			ch, err := api.ParseLabelChanges(args[2:])
			if err != nil {
				return err
			}
			return o.call(cmd, func(ctx context.Context, c *client.Client) error {
				var r *api.PolicyResult
				switch args[0] {
				case "namespace":
					r, err = c.LabelNamespace(ctx, args[1], ch)
				case "workload":
					ns, name, ok := strings.Cut(args[1], "/")
					if !ok {
						return fmt.Errorf("workload %q: give NAMESPACE/NAME", args[1])
					}
					r, err = c.LabelWorkload(ctx, ns, name, ch)
				default:
					return fmt.Errorf("label %q: label a namespace or a workload", args[0])
				}
				if err != nil {
					return err
				}
				return o.show(cmd, r, func(w io.Writer) { fmt.Fprintf(w, "labelled %s\n", strings.Join(r.Objects, ", ")) })
			})
		},
	}
}

// readFileArg reads FILE, or stdin for "-".
func readFileArg(cmd *cobra.Command, name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(cmd.InOrStdin())
	}
	return os.ReadFile(name)
}
