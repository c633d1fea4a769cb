// Package api holds the control API's wire types that the server writes
// and the client reads, so the two cannot drift apart. (Older bodies are
// still mirrored in internal/client; they move here as they are touched.)
package api

import (
	"net/netip"

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
}
