package api

import (
	"errors"
	"fmt"
	"strings"

	"github.com/terrane-net/terrane/internal/policy"
)

// PolicyState is the body of GET /v1/policy: everything the policy compiler
// reads, as the server holds it. Cluster.Pods are the workloads the server
// knows of: pods the agents report (by the namespace/name their runtime
// gave) and VM ports (named by their ID), each with the labels and ports of
// its workload record; a workload record with no address yet is listed
// with no node and no address, for the agent of the host it starts on.
type PolicyState struct {
	Revision int64          `json:"revision"`
	Cluster  policy.Cluster `json:"cluster"`
}

// Workload is a pod's or a VM port's labels and ports, by namespace and
// name: what selectors and named ports read.
type Workload struct {
	Namespace string                 `json:"namespace"`
	Name      string                 `json:"name"`
	Labels    map[string]string      `json:"labels,omitempty"`
	Ports     []policy.ContainerPort `json:"ports,omitempty"`
}

// PolicyApply is the body of POST /v1/policy: objects created or replaced
// together, in one transaction; nothing is written when one is invalid.
type PolicyApply struct {
	NetworkPolicies        []policy.NetworkPolicy        `json:"networkPolicies,omitempty"`
	ClusterNetworkPolicies []policy.ClusterNetworkPolicy `json:"clusterNetworkPolicies,omitempty"`
	// Namespaces' labels replace the ones recorded.
	Namespaces []policy.Namespace `json:"namespaces,omitempty"`
	Workloads  []Workload         `json:"workloads,omitempty"`
}

// LabelChange is the body of PATCH /v1/policy/namespaces/{ns}/labels and
// PATCH /v1/policy/workloads/{ns}/{name}/labels: labels set and removed in
// one compare-and-swap.
type LabelChange struct {
	Set    map[string]string `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// PolicyResult answers a policy write: the objects written ("Kind
// namespace/name"), and the store revision that holds them.
type PolicyResult struct {
	Objects  []string `json:"objects"`
	Revision int64    `json:"revision"`
}

// ParseLabelChanges reads label changes as kubectl label takes them:
// KEY=VALUE sets a label, KEY- removes it.
func ParseLabelChanges(args []string) (LabelChange, error) {
	var ch LabelChange
	for _, a := range args {
		if k, ok := strings.CutSuffix(a, "-"); ok && !strings.Contains(a, "=") {
			ch.Remove = append(ch.Remove, k)
			continue
		}
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return LabelChange{}, fmt.Errorf("%q: give KEY=VALUE to set a label or KEY- to remove it", a)
		}
		if ch.Set == nil {
			ch.Set = map[string]string{}
		}
		ch.Set[k] = v
	}
	if len(ch.Set)+len(ch.Remove) == 0 {
		return LabelChange{}, errors.New("no label change: give KEY=VALUE or KEY-")
	}
	return ch, nil
}
