// Package policy is the pure NetworkPolicy compiler: the cluster's policies,
// namespaces and pods go in, one node's rule set comes out — for each pod on
// the node, whether each direction is isolated and, if so, the peers and
// ports it may talk to, as address sets and port ranges an nftables adapter
// writes as set elements. Compile compiles from nothing; a Compiler
// compiles one node again at every change and decides again only the
// directions the change reached, with the same result.
//
// The input types mirror networking.k8s.io/v1 field for field (and their JSON
// names), so a manifest decodes into them without client-go and the two
// sources of policies — the Kubernetes API and the Terrane server — feed one
// compiler. The package does no I/O and reads no clock (internal/archtest).
package policy

import (
	"encoding/json"
	"fmt"
	"net/netip"
)

// Protocol is a transport protocol a port rule names.
type Protocol string

// The protocols NetworkPolicy ports may name.
const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// OtherProtocols stands, in compiled rule sets, for every IP protocol but
// TCP, UDP and SCTP (ICMP among them); its port range is always 0-65535.
const OtherProtocols Protocol = "Other"

// Protocols are the protocol classes of compiled rule sets, in the order
// they print.
var Protocols = []Protocol{TCP, UDP, SCTP, OtherProtocols}

// PolicyType is a direction a policy isolates.
type PolicyType string

// The directions.
const (
	Ingress PolicyType = "Ingress"
	Egress  PolicyType = "Egress"
)

// ObjectMeta is the part of Kubernetes object metadata policy needs.
type ObjectMeta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// NetworkPolicy is a networking.k8s.io/v1 NetworkPolicy.
type NetworkPolicy struct {
	APIVersion string            `json:"apiVersion,omitempty"`
	Kind       string            `json:"kind,omitempty"`
	Metadata   ObjectMeta        `json:"metadata"`
	Spec       NetworkPolicySpec `json:"spec"`
}

// Key is the policy's namespace/name.
func (p *NetworkPolicy) Key() string { return p.Metadata.Namespace + "/" + p.Metadata.Name }

// NetworkPolicySpec is the policy's spec.
type NetworkPolicySpec struct {
	PodSelector Selector      `json:"podSelector"`
	PolicyTypes []PolicyType  `json:"policyTypes,omitempty"`
	Ingress     []IngressRule `json:"ingress,omitempty"`
	Egress      []EgressRule  `json:"egress,omitempty"`
}

// Affects reports whether the policy isolates the direction: its
// policyTypes, or when they are missing, Ingress always and Egress when it
// has egress rules (the API's defaulting).
func (s *NetworkPolicySpec) Affects(t PolicyType) bool {
	if len(s.PolicyTypes) == 0 {
		return t == Ingress || (t == Egress && len(s.Egress) > 0)
	}
	for _, pt := range s.PolicyTypes {
		if pt == t {
			return true
		}
	}
	return false
}

// IngressRule admits traffic from any of From on any of Ports. Empty or
// missing From means every source; empty or missing Ports every port of
// every protocol.
type IngressRule struct {
	From  []Peer `json:"from,omitempty"`
	Ports []Port `json:"ports,omitempty"`
}

// EgressRule admits traffic to any of To on any of Ports, with the same
// meaning of empty.
type EgressRule struct {
	To    []Peer `json:"to,omitempty"`
	Ports []Port `json:"ports,omitempty"`
}

// Peer is one side of a rule: pods by selectors, or addresses by block.
// PodSelector alone selects pods of the policy's namespace;
// NamespaceSelector alone every pod of the namespaces it selects; both, the
// pods PodSelector selects in those namespaces.
type Peer struct {
	PodSelector       *Selector `json:"podSelector,omitempty"`
	NamespaceSelector *Selector `json:"namespaceSelector,omitempty"`
	IPBlock           *IPBlock  `json:"ipBlock,omitempty"`
}

// IPBlock is a CIDR minus the CIDRs in Except.
type IPBlock struct {
	CIDR   string   `json:"cidr"`
	Except []string `json:"except,omitempty"`
}

// Port matches a protocol (TCP when missing) and a port: a number, a number
// range up to EndPort, a named port of the destination pod, or, when Port is
// missing, every port of the protocol.
type Port struct {
	Protocol *Protocol    `json:"protocol,omitempty"`
	Port     *IntOrString `json:"port,omitempty"`
	EndPort  *int32       `json:"endPort,omitempty"`
}

// Proto is the port's protocol with the API's default.
func (p *Port) Proto() Protocol {
	if p.Protocol == nil {
		return TCP
	}
	return *p.Protocol
}

// IntOrString is a port number or a port name, as JSON 80 or "http".
type IntOrString struct {
	Int    int32
	Str    string
	String bool
}

// MarshalJSON writes a number or a string.
func (v IntOrString) MarshalJSON() ([]byte, error) {
	if v.String {
		return json.Marshal(v.Str)
	}
	return json.Marshal(v.Int)
}

// UnmarshalJSON reads a number or a string.
func (v *IntOrString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		v.String = true
		return json.Unmarshal(b, &v.Str)
	}
	v.String = false
	if err := json.Unmarshal(b, &v.Int); err != nil {
		return fmt.Errorf("a port is a number or a name: %s", b)
	}
	return nil
}

// Selector is a Kubernetes label selector. The empty selector selects
// everything.
type Selector struct {
	MatchLabels      map[string]string `json:"matchLabels,omitempty"`
	MatchExpressions []Requirement     `json:"matchExpressions,omitempty"`
}

// Requirement is one matchExpressions entry.
type Requirement struct {
	Key      string   `json:"key"`
	Operator Operator `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// Operator is a matchExpressions operator.
type Operator string

// The operators of label selectors.
const (
	OpIn           Operator = "In"
	OpNotIn        Operator = "NotIn"
	OpExists       Operator = "Exists"
	OpDoesNotExist Operator = "DoesNotExist"
)

// Matches reports whether labels satisfy every matchLabels entry and every
// expression. Call it on validated selectors only.
func (s *Selector) Matches(labels map[string]string) bool {
	for k, v := range s.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, r := range s.MatchExpressions {
		v, ok := labels[r.Key]
		switch r.Operator {
		case OpIn:
			if !ok || !contains(r.Values, v) {
				return false
			}
		case OpNotIn:
			if ok && contains(r.Values, v) {
				return false
			}
		case OpExists:
			if !ok {
				return false
			}
		case OpDoesNotExist:
			if ok {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// Namespace is a namespace and its labels.
type Namespace struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// MetadataNameLabel is the label the API server puts on every namespace,
// naming it; the compiler adds it where a source left it out, so selectors
// on it match as in a cluster.
const MetadataNameLabel = "kubernetes.io/metadata.name"

// ContainerPort is a port a pod serves, by number and, optionally, name.
type ContainerPort struct {
	Name     string   `json:"name,omitempty"`
	Port     int32    `json:"containerPort"`
	Protocol Protocol `json:"protocol,omitempty"`
}

// Proto is the port's protocol, TCP when missing.
func (c ContainerPort) Proto() Protocol {
	if c.Protocol == "" {
		return TCP
	}
	return c.Protocol
}

// Pod is what policy needs of a pod.
type Pod struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Node is the node the pod runs on.
	Node string       `json:"node"`
	IPs  []netip.Addr `json:"ips,omitempty"`
	// Ports are the container ports, for named ports.
	Ports []ContainerPort `json:"ports,omitempty"`
	// HostNetwork pods share the node's addresses: no selector selects them
	// and no rule set protects them.
	HostNetwork bool `json:"hostNetwork,omitempty"`
}

// Key is the pod's namespace/name.
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// Cluster is everything the compiler reads.
type Cluster struct {
	Namespaces      []Namespace            `json:"namespaces,omitempty"`
	Pods            []Pod                  `json:"pods,omitempty"`
	Policies        []NetworkPolicy        `json:"policies,omitempty"`
	ClusterPolicies []ClusterNetworkPolicy `json:"clusterPolicies,omitempty"`
	Nodes           []NodeInfo             `json:"nodes,omitempty"`
}

// ClusterNetworkPolicy is a policy.networking.k8s.io/v1beta1
// ClusterNetworkPolicy (sigs.k8s.io/network-policy-api v0.3.0): a
// cluster-wide policy in the Admin tier, decided before NetworkPolicy, or
// the Baseline tier, decided for what NetworkPolicy leaves open.
type ClusterNetworkPolicy struct {
	APIVersion string                   `json:"apiVersion,omitempty"`
	Kind       string                   `json:"kind,omitempty"`
	Metadata   ObjectMeta               `json:"metadata"`
	Spec       ClusterNetworkPolicySpec `json:"spec"`
}

// ClusterNetworkPolicySpec is its spec.
type ClusterNetworkPolicySpec struct {
	Tier     Tier       `json:"tier"`
	Priority int32      `json:"priority"`
	Subject  CNPSubject `json:"subject"`
	// Rules are tried in order; the first that matches decides.
	Ingress []CNPIngressRule `json:"ingress,omitempty"`
	Egress  []CNPEgressRule  `json:"egress,omitempty"`
}

// Tier is where a cluster policy is decided.
type Tier string

// The tiers a ClusterNetworkPolicy may use.
const (
	AdminTier    Tier = "Admin"
	BaselineTier Tier = "Baseline"
)

// Action is what a matching cluster policy rule does.
type Action string

// The actions: Accept and Deny decide; Pass skips the rest of the tier.
const (
	Accept Action = "Accept"
	Deny   Action = "Deny"
	Pass   Action = "Pass"
)

// CNPSubject selects the pods a cluster policy applies to: exactly one of
// the fields.
type CNPSubject struct {
	Namespaces *Selector      `json:"namespaces,omitempty"`
	Pods       *NamespacedPod `json:"pods,omitempty"`
}

// NamespacedPod selects pods by pod labels in namespaces by namespace
// labels; an empty selector selects all.
type NamespacedPod struct {
	NamespaceSelector Selector `json:"namespaceSelector"`
	PodSelector       Selector `json:"podSelector"`
}

// CNPIngressRule is one ingress rule of a cluster policy.
type CNPIngressRule struct {
	Name      string        `json:"name,omitempty"`
	Action    Action        `json:"action"`
	From      []CNPPeer     `json:"from"`
	Protocols []CNPProtocol `json:"protocols,omitempty"`
}

// CNPEgressRule is one egress rule of a cluster policy.
type CNPEgressRule struct {
	Name      string        `json:"name,omitempty"`
	Action    Action        `json:"action"`
	To        []CNPPeer     `json:"to"`
	Protocols []CNPProtocol `json:"protocols,omitempty"`
}

// CNPPeer is exactly one of: pods of namespaces, pods by both selectors,
// nodes' addresses (egress), CIDRs (egress). DomainNames (experimental) is
// refused.
type CNPPeer struct {
	Namespaces  *Selector      `json:"namespaces,omitempty"`
	Pods        *NamespacedPod `json:"pods,omitempty"`
	Nodes       *Selector      `json:"nodes,omitempty"`
	Networks    []string       `json:"networks,omitempty"`
	DomainNames []string       `json:"domainNames,omitempty"`
}

// CNPProtocol is exactly one of a TCP, UDP or SCTP destination port match
// (every port of the protocol when the port is missing) or a destination
// pod's named port.
type CNPProtocol struct {
	TCP                  *CNPPortMatch `json:"tcp,omitempty"`
	UDP                  *CNPPortMatch `json:"udp,omitempty"`
	SCTP                 *CNPPortMatch `json:"sctp,omitempty"`
	DestinationNamedPort string        `json:"destinationNamedPort,omitempty"`
}

// CNPPortMatch holds an optional destination port.
type CNPPortMatch struct {
	DestinationPort *CNPPort `json:"destinationPort,omitempty"`
}

// CNPPort is a port number or an inclusive range.
type CNPPort struct {
	Number int32         `json:"number,omitempty"`
	Range  *CNPPortRange `json:"range,omitempty"`
}

// CNPPortRange is Start to End, Start < End.
type CNPPortRange struct {
	Start int32 `json:"start"`
	End   int32 `json:"end"`
}

// NodeInfo is what cluster policies' node peers need of a node.
type NodeInfo struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	IPs    []netip.Addr      `json:"ips,omitempty"`
}
