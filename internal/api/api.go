// Package api holds the control API's wire types — every request and
// answer body, which internal/server writes and reads and internal/client
// reads and writes, so the two cannot drift apart — and the rules both
// sides check, such as the name rule (ValidateName).
package api

import (
	"net/netip"
	"time"

	"github.com/terrane-net/terrane/internal/ipam"
)

// Snapshot is everything a node agent needs to compute its routes, read at
// one revision: the topology, every host, every block and every group's
// prefixes (GET /v1/snapshot).
type Snapshot struct {
	Revision int64           `json:"revision"`
	Topology string          `json:"topology"`
	Mode     string          `json:"mode"`
	Budgets  ipam.Budgets    `json:"budgets"`
	Hosts    []ipam.HostInfo `json:"hosts"`
	// Blocks and Groups are keyed by network (Groups then by group path).
	Blocks map[string][]ipam.BlockInfo          `json:"blocks"`
	Groups map[string]map[string][]netip.Prefix `json:"groups"`
	// Namespaces maps each namespace with its own default network to it.
	Namespaces map[string]string `json:"namespaces,omitempty"`
	// Ports are the VM ports (endpoints the server allocated) of the host
	// the snapshot was asked for (?host=), which its agent routes.
	Ports []ipam.Endpoint `json:"ports,omitempty"`
	// Releases are the orphaned pod addresses the host's agent is to
	// release (?host=, for the host's own identity or an admin only).
	Releases []ipam.OrphanedAddress `json:"releases,omitempty"`
}

// HostReleases answers GET /v1/hosts/{host}/releases: the orphaned pod
// addresses (their pods no longer exist) the host's agent is to release,
// each exactly like a CNI DEL of its attachment.
type HostReleases struct {
	Host     string                 `json:"host"`
	Releases []ipam.OrphanedAddress `json:"releases"`
}

// VPCStatus is the body of GET /v1/vpc: the VPC route reconciler as this
// server sees it.
type VPCStatus struct {
	// Configured is false when the server runs without --vpc-config.
	Configured bool `json:"configured"`
	// Active is true on the one server that holds the reconciler lease;
	// Holder names the holder as last seen.
	Active bool   `json:"active"`
	Holder string `json:"holder,omitempty"`
	// Revision is the store revision of the state last reconciled.
	Revision      int64     `json:"revision"`
	LastReconcile time.Time `json:"last_reconcile,omitzero"`
	// Duration is how long the last pass took, in seconds.
	Duration  float64          `json:"duration_seconds"`
	LastError string           `json:"last_error,omitempty"`
	Tables    []VPCTableStatus `json:"tables"`
	// Calls counts cloud API calls by action since the server started.
	Calls     map[string]int64 `json:"calls"`
	Throttled int64            `json:"throttled"`
}

// VPCTableStatus is one route table.
type VPCTableStatus struct {
	ID     string   `json:"id"`
	Groups []string `json:"groups"`
	// Families has one entry per address family with Terrane networks.
	Families []VPCFamilyStatus `json:"families"`
	// Instances is how many instances the table's hosts run on; Checked
	// how many of them have the source/destination check disabled.
	Instances int `json:"instances"`
	Checked   int `json:"source_dest_check_disabled"`
	// Ops counts route calls applied in the last pass.
	Ops int `json:"ops"`
	// RouteLimitHit is set when the cloud refused a route for its limit
	// in the last pass (EC2 RouteLimitExceeded).
	RouteLimitHit bool     `json:"route_limit_hit,omitempty"`
	LastError     string   `json:"last_error,omitempty"`
	Problems      []string `json:"problems,omitempty"`
}

// VPCFamilyStatus is a table's routes of one address family.
type VPCFamilyStatus struct {
	Family string `json:"family"` // ipv4 or ipv6
	// Routes is how many of Terrane's routes the table holds.
	Routes int `json:"routes"`
	Budget int `json:"budget"`
	// Needed is the size of the routing core's set; Fits is false when it
	// exceeds the budget even at the most aggregation.
	Needed           int     `json:"needed"`
	Fits             bool    `json:"fits"`
	DirectShare      float64 `json:"direct_share"`
	DirectBlockShare float64 `json:"direct_block_share"`
}

// HeartbeatResult answers PUT /v1/hosts/{host}/heartbeat.
type HeartbeatResult struct {
	Host string `json:"host"`
	// Stored is when the heartbeat record was last written; the server
	// writes it at most once per interval, so it may be older than now.
	Stored time.Time `json:"stored"`
	// Written is true when this call wrote the record.
	Written bool `json:"written"`
}
