// Package bgp is what the agent tells and asks the node's BGP speaker: the
// configuration it starts with, the sessions and prefixes it should have
// (Desired) and what it reports (Status). It holds no speaker: gobgp/ runs
// one on GoBGP, and cmd/terrane hands it to the agent, which never links
// GoBGP (internal/archtest).
package bgp

import (
	"log/slog"
	"net/netip"
	"time"
)

// DefaultPort is where peers listen when a Peer names no port.
const DefaultPort = 179

// Config is what a speaker starts with. Changing any of it means a new
// speaker.
type Config struct {
	// RouterID is the host's IPv4 address: the BGP identifier, the
	// sessions' source address and the next hop of every announcement.
	RouterID netip.Addr
	// NextHop6, when valid, is the host's IPv6 address: the sessions
	// (over IPv4) also carry IPv6 unicast (multiprotocol BGP, RFC 4760),
	// and IPv6 prefixes are announced with it as next hop. Invalid: IPv6
	// prefixes are refused.
	NextHop6 netip.Addr
	// ASN is the host's own AS number.
	ASN uint32
	// GracefulRestart is how long peers keep this speaker's routes when
	// its sessions drop without a Cease (a crash, a restart); 0 disables
	// graceful restart. At most 4095 s.
	GracefulRestart time.Duration
	// ListenPort accepts sessions on RouterID:ListenPort; 0 never listens
	// (the agent's speaker connects out only). Tests use it for the peer
	// side.
	ListenPort int
	// OnChange, if set, is called (from GoBGP's goroutine; it must not
	// block) whenever a peer's session state changes.
	OnChange func()
	Log      *slog.Logger
}

// Peer is one router the speaker keeps a session with.
type Peer struct {
	Address netip.Addr
	ASN     uint32
	// Port is the peer's BGP port (0: 179).
	Port int
	// Password turns on TCP MD5 signatures (RFC 2385).
	Password string
	// Passive waits for the peer to connect (the test peer side only).
	Passive bool
}

// Desired is what the speaker should be doing: the sessions to keep and the
// prefixes to announce on every one of them.
type Desired struct {
	Peers    []Peer
	Prefixes []netip.Prefix
}

// Status is what the speaker is doing.
type Status struct {
	RouterID netip.Addr
	ASN      uint32
	// GracefulRestart is the restart time peers were offered (0: off).
	GracefulRestart time.Duration
	Peers           []PeerStatus // by address
	// Announced is every prefix the speaker announces, sorted.
	Announced []netip.Prefix
}

// PeerStatus is one session.
type PeerStatus struct {
	Address netip.Addr
	ASN     uint32
	// State is idle, connect, active, opensent, openconfirm or
	// established.
	State string
	// Since is when the session entered State.
	Since time.Time
	// Uptime is how long the session has been established (0 otherwise).
	Uptime time.Duration
	// PrefixesSent and PrefixesReceived count the routes on an
	// established session.
	PrefixesSent, PrefixesReceived uint64
	// LastError is why the session last went down, when GoBGP knows.
	LastError string
}
