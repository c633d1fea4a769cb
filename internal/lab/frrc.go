package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// FRR's tables are read in JSON (`show bgp ipv4 unicast json`, `show bgp
// summary json`) and put in BIRD's terms: a session is named like BIRD's
// protocol for the same peer (h_<host>, r_<router>) and a redistributed
// segment comes "from segments", so one expected table fits both daemons.

// frrPath is one path of `show bgp ipv4 unicast json`.
type frrPath struct {
	Valid    bool   `json:"valid"`
	Bestpath bool   `json:"bestpath"`
	Multi    bool   `json:"multipath"`
	Stale    bool   `json:"stale"`
	PeerID   string `json:"peerId"` // the peer's address, "(unspec)" for a local route
	Path     string `json:"path"`   // the AS path, "65002 64602"
	Origin   string `json:"origin"` // IGP, EGP, incomplete
	Nexthops []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
}

// ParseFRRRoutes parses `show bgp ipv4 unicast json` into routes in BIRD's
// terms, sorted like ParseBirdRoutes: peers maps a peer's address to its
// session; segments maps a router's segment subnets to their names.
func ParseFRRRoutes(data []byte, peers []BirdPeer, segments map[netip.Prefix]string) ([]BirdRoute, error) {
	var doc struct {
		Routes map[string][]frrPath `json:"routes"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("show bgp ipv4 unicast json: %w", err)
	}
	byAddr := map[string]string{}
	for _, p := range peers {
		byAddr[p.Addr.String()] = p.Protocol
	}
	var out []BirdRoute
	for key, paths := range doc.Routes {
		prefix, err := netip.ParsePrefix(key)
		if err != nil {
			return nil, fmt.Errorf("show bgp ipv4 unicast json: route %q: %v", key, err)
		}
		prefix = prefix.Masked()
		for _, p := range paths {
			if !p.Valid {
				continue
			}
			r := BirdRoute{Prefix: prefix, Type: "unicast", Primary: p.Bestpath, Stale: p.Stale}
			switch proto, ok := byAddr[p.PeerID]; {
			case p.PeerID == "(unspec)" && segments[prefix] != "":
				r.Protocol, r.Dev = "segments", routerSegIf(segments[prefix])
			case p.PeerID == "(unspec)":
				r.Protocol = "local"
			case ok:
				r.Protocol = proto
			default:
				r.Protocol = "peer_" + p.PeerID // a session the lab did not configure
			}
			if r.Dev == "" {
				for _, nh := range p.Nexthops {
					a, err := netip.ParseAddr(nh.IP)
					if err != nil {
						return nil, fmt.Errorf("show bgp ipv4 unicast json: %s next hop %q: %v", prefix, nh.IP, err)
					}
					if !a.IsUnspecified() {
						r.Via = append(r.Via, a)
					}
				}
			}
			if asns := strings.Fields(p.Path); len(asns) > 0 {
				r.Origin = "AS" + asns[len(asns)-1] + frrOrigin[p.Origin]
			}
			out = append(out, r)
		}
	}
	sortRoutes(out)
	return out, nil
}

// frrOrigin is BIRD's letter for FRR's origin code.
var frrOrigin = map[string]string{"IGP": "i", "EGP": "e", "incomplete": "?"}

// ParseFRRSessions parses `show bgp summary json` into sessions in
// BIRD's terms (Info is FRR's state: Established, Active, Connect, …).
func ParseFRRSessions(data []byte, peers []BirdPeer) ([]BirdProtocol, error) {
	var doc struct {
		IPv4 struct {
			Peers map[string]struct {
				State string `json:"state"`
			} `json:"peers"`
		} `json:"ipv4Unicast"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("show bgp summary json: %w", err)
	}
	var out []BirdProtocol
	for _, p := range peers {
		s, ok := doc.IPv4.Peers[p.Addr.String()]
		bp := BirdProtocol{Name: p.Protocol, Proto: "BGP", State: "start", Info: s.State}
		switch {
		case !ok:
			bp.State, bp.Info = "down", "not configured"
		case s.State == "Established":
			bp.State = "up"
		}
		out = append(out, bp)
	}
	return out, nil
}

// ReadFRR reads an FRR router's sessions and table through vtysh.
func ReadFRR(ctx context.Context, st *State, router string) (*BirdState, error) {
	r, ok := st.Scenario.Router(router)
	if !ok || !r.BGP.RunsFRR() {
		return nil, fmt.Errorf("router %q does not run FRR", router)
	}
	dir := st.names().frr(router).Dir
	peers := BirdPeers(st.Scenario, router, st.speakers())
	out, err := vtysh(ctx, dir, "bgpd", "show bgp summary json")
	if err != nil {
		return nil, err
	}
	bs := &BirdState{ASN: r.BGP.ASN, Daemon: DaemonFRR}
	if bs.Protocols, err = ParseFRRSessions(out, peers); err != nil {
		return nil, fmt.Errorf("router %s: %w", router, err)
	}
	if out, err = vtysh(ctx, dir, "bgpd", "show bgp ipv4 unicast json"); err != nil {
		return nil, err
	}
	segments := map[netip.Prefix]string{}
	for _, s := range st.Scenario.Segments {
		if s.Router == router {
			segments[s.Subnet] = s.Name
		}
	}
	if bs.Routes, err = ParseFRRRoutes(out, peers, segments); err != nil {
		return nil, fmt.Errorf("router %s: %w", router, err)
	}
	return bs, nil
}

// ReadBGP reads a BGP router's sessions and table from the daemon it runs.
func ReadBGP(ctx context.Context, st *State, router string) (*BirdState, error) {
	if r, ok := st.Scenario.Router(router); ok && r.BGP.RunsFRR() {
		return ReadFRR(ctx, st, router)
	}
	return ReadBird(ctx, st, router)
}

// sortRoutes sorts routes by prefix, the primary route of a prefix first,
// then by protocol.
func sortRoutes(out []BirdRoute) {
	slices.SortStableFunc(out, func(a, b BirdRoute) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		if c := a.Prefix.Bits() - b.Prefix.Bits(); c != 0 {
			return c
		}
		switch {
		case a.Primary && !b.Primary:
			return -1
		case b.Primary && !a.Primary:
			return 1
		}
		return strings.Compare(a.Protocol, b.Protocol)
	})
}

// speakers is hostSpeakers of the lab's scenario and its topology (none
// when the topology does not compile).
func (s *State) speakers() map[string]hostSpeaker {
	t, err := s.Scenario.Compile()
	if err != nil {
		return nil
	}
	return hostSpeakers(s.Scenario, t)
}
