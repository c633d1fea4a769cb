package api

import (
	"net/netip"
	"time"
)

// BGPStatus is what a host's BGP speaker is doing, as its agent reports it
// (PUT /v1/hosts/{host}/bgp) and the server keeps it.
type BGPStatus struct {
	// Host is set by the server from the path.
	Host     string     `json:"host"`
	RouterID netip.Addr `json:"routerID,omitzero"`
	ASN      uint32     `json:"asn,omitempty"`
	// GracefulRestartSeconds is the restart time offered to peers (0: off).
	GracefulRestartSeconds int             `json:"gracefulRestartSeconds"`
	Peers                  []BGPPeerStatus `json:"peers"`
	// Announced is every prefix the host announces, sorted.
	Announced []netip.Prefix `json:"announced"`
	// Error is why the speaker does not do what the host's state asks
	// (the last failed apply), empty when it does.
	Error string `json:"error,omitempty"`
	// ReportedAt is when the server received the report (set by it).
	ReportedAt time.Time `json:"reportedAt,omitzero"`
}

// BGPPeerStatus is one session of a host's speaker.
type BGPPeerStatus struct {
	Address netip.Addr `json:"address"`
	ASN     uint32     `json:"asn"`
	// State is idle, connect, active, opensent, openconfirm or established.
	State string `json:"state"`
	// Since is when the session entered State.
	Since            time.Time `json:"since,omitzero"`
	PrefixesSent     uint64    `json:"prefixesSent"`
	PrefixesReceived uint64    `json:"prefixesReceived"`
	// LastError is why the session last went down, when known.
	LastError string `json:"lastError,omitempty"`
}

// BGPReport answers GET /v1/bgp: every registered host whose group routes
// by bgp in some network, or that has reported, by name.
type BGPReport struct {
	Hosts []BGPHostReport `json:"hosts"`
}

// BGPHostReport is one host's BGP status, or why there is none.
type BGPHostReport struct {
	Host string `json:"host"`
	// Groups are the host's bgp leaf groups by network.
	Groups map[string]string `json:"groups,omitempty"`
	// Reported is false when the host's agent has not reported yet.
	Reported bool       `json:"reported"`
	Status   *BGPStatus `json:"status,omitempty"`
}
