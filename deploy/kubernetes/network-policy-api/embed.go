// Package networkpolicyapi ships the upstream ClusterNetworkPolicy CRD
// (sigs.k8s.io/network-policy-api v0.3.0, standard channel) that Terrane's
// agents enforce: apply it once per cluster with kubectl apply -f
// deploy/kubernetes/network-policy-api/ before the agents start. The lab
// installs it from this embedded copy.
package networkpolicyapi

import _ "embed"

// CRD is the ClusterNetworkPolicy CustomResourceDefinition as YAML.
//
//go:embed policy.networking.k8s.io_clusternetworkpolicies.yaml
var CRD []byte
