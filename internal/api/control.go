package api

import (
	"net/netip"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/usage"
)

// Error is the body of every error answer: 4xx for bad input, 5xx for
// the server's own trouble.
type Error struct {
	Error string `json:"error"`
	// Field names the request field at fault, when one is.
	Field   string   `json:"field,omitempty"`
	Details []string `json:"details,omitempty"`
	// Conflicts are why a topology change was refused: the live state it
	// would orphan.
	Conflicts []ipam.Finding `json:"conflicts,omitempty"`
}

// Health answers GET /healthz.
type Health struct {
	// Status is ok, or unhealthy (503) when the server cannot load the
	// stored records; Error then says why.
	Status   string `json:"status"`
	Revision int64  `json:"revision"`
	Error    string `json:"error,omitempty"`
}

// Topology answers GET /v1/topology: the applied topology.
type Topology struct {
	// Topology is the file's text as it was applied.
	Topology string       `json:"topology"`
	Mode     string       `json:"mode"`
	Budgets  ipam.Budgets `json:"budgets"`
	// Revision names this topology: pass it as TopologyRequest.Replaces.
	Revision int64 `json:"revision"`
}

// TopologyRequest is the body of POST /v1/topology: apply a topology or,
// with DryRun, only diff it.
type TopologyRequest struct {
	// Topology is the file's text: Terrane YAML/JSON or Romana JSON.
	Topology string `json:"topology"`
	// Mode is elastic (default) or static.
	Mode    string       `json:"mode,omitempty"`
	Budgets ipam.Budgets `json:"budgets"`
	// DryRun validates and reports the diff without applying it.
	DryRun bool `json:"dry_run,omitempty"`
	// Replaces is the revision of the topology the caller read (0: none,
	// or do not check); the server refuses the apply if another topology
	// was applied since.
	Replaces int64 `json:"replaces,omitempty"`
}

// TopologyResult answers POST /v1/topology.
type TopologyResult struct {
	DryRun bool `json:"dry_run"`
	// Revision is the new topology's (0 for a dry run).
	Revision int64 `json:"revision"`
	Replaces int64 `json:"replaces"`
	// Diff lists the records that change: "+ added", "~ changed", "- removed".
	Diff   []string `json:"diff"`
	Writes int      `json:"writes"`
}

// Report answers GET /v1/plan and GET /v1/utilisation: the applied
// topology per network.
type Report struct {
	Mode     string                `json:"mode"`
	Networks []usage.NetworkReport `json:"networks"`
}

// CheckReport answers GET /v1/check: the consistency report.
type CheckReport struct {
	Clean    bool           `json:"clean"`
	Findings []ipam.Finding `json:"findings"`
}

// HostRequest is the body of PUT /v1/hosts/{host}: register or relabel.
type HostRequest struct {
	IP netip.Addr `json:"ip,omitzero"`
	// IP6 is the host's IPv6 address beside IP (a dual-stack underlay);
	// its L2 peers route the IPv6 networks' blocks via it.
	IP6    netip.Addr        `json:"ip6,omitzero"`
	Labels map[string]string `json:"labels,omitempty"`
}

// HostResult answers PUT /v1/hosts/{host}.
type HostResult struct {
	Host    ipam.HostInfo `json:"host"`
	Changes []ipam.Change `json:"changes"`
}

// HostList answers GET /v1/hosts.
type HostList struct {
	Hosts []ipam.HostInfo `json:"hosts"`
}

// BlockRequest is the body of POST /v1/hosts/{host}/blocks.
type BlockRequest struct {
	Network string `json:"network"`
}

// BlockClaim answers POST /v1/hosts/{host}/blocks.
type BlockClaim struct {
	Block   netip.Prefix  `json:"block"`
	Changes []ipam.Change `json:"changes"`
}

// BlockList answers GET /v1/blocks: blocks by network.
type BlockList struct {
	Blocks map[string][]ipam.BlockInfo `json:"blocks"`
}

// EndpointRequest is the body of POST /v1/endpoints.
type EndpointRequest struct {
	// ID is the endpoint's stable name (e.g. the VM port ID); asking again
	// with the same ID returns the same address.
	ID   string `json:"id"`
	Host string `json:"host"`
	// Network, Namespace and Addr are optional: the server picks the
	// namespace's default network and the next free address.
	Network   string     `json:"network,omitempty"`
	Namespace string     `json:"namespace,omitempty"`
	Addr      netip.Addr `json:"addr,omitzero"`
}

// EndpointResult answers POST /v1/endpoints.
type EndpointResult struct {
	Endpoint ipam.Endpoint `json:"endpoint"`
	Changes  []ipam.Change `json:"changes"`
	// Created is false when the endpoint already had this address (the
	// answer is then 200, not 201).
	Created bool `json:"created"`
}

// EndpointList answers GET /v1/endpoints.
type EndpointList struct {
	Endpoints []ipam.Endpoint `json:"endpoints"`
}

// Changes answers the DELETEs: what the removal changed.
type Changes struct {
	Changes []ipam.Change `json:"changes"`
}

// NamespaceRequest is the body of PUT /v1/namespaces/{ns}: the
// namespace's own default network (Kubernetes: its annotation
// terrane.io/network).
type NamespaceRequest struct {
	Network string `json:"network"`
}

// NamespaceList answers GET /v1/namespaces: each namespace that has its own
// default network, to it.
type NamespaceList struct {
	Namespaces map[string]string `json:"namespaces"`
}
