package routing

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// SpeakerConfig is what one host's BGP speaker runs with and announces.
type SpeakerConfig struct {
	ASN uint32
	// GracefulRestartSeconds is the restart time offered to peers (0: off).
	GracefulRestartSeconds int
	// Peers are the routers to speak to: the host's own in their order, or
	// the topology's sorted by address.
	Peers []topology.BGPPeer
	// Prefixes are what the host announces, sorted and distinct.
	Prefixes []netip.Prefix
}

// BGPOverrides are a host's own BGP settings (its agent's flags), which
// replace the topology's.
type BGPOverrides struct {
	// ASN replaces the topology's AS number (0: the topology's).
	ASN uint32
	// Peers, when any, replace the topology's peers; one the topology also
	// lists lends its port and password where the host's leaves them
	// unset.
	Peers []topology.BGPPeer
}

// HostBGP is what the host's BGP speaker should run with: over every
// network where the host's leaf group routes by bgp, the union of the
// groups' peers and of what Advertisements gives the host. ok is false when
// no such network exists (or the view lacks the host): it runs no speaker.
// One speaker has one AS number and restart time, the first network's;
// warn names every network that asks for others, and every network whose
// announcements cannot be computed (they are left out).
func HostBGP(v HostView, own BGPOverrides) (cfg SpeakerConfig, ok bool, warn error) {
	self, registered := hostInfo(v.Hosts, v.Host)
	if v.Topology == nil || !registered {
		return cfg, false, nil
	}
	var (
		conf  *topology.BGPConfig
		peers = map[netip.Addr]topology.BGPPeer{}
		warns []error
	)
	for _, n := range v.Topology.Networks {
		path := self.Groups[n.Name]
		if path == "" {
			continue
		}
		g := n.Tree.Group(path)
		if g == nil || g.Mode != topology.ModeBGP || g.BGP == nil {
			continue
		}
		if conf == nil {
			conf = g.BGP
		} else if conf.ASN != g.BGP.ASN || conf.GracefulRestartSeconds != g.BGP.GracefulRestartSeconds {
			warns = append(warns, fmt.Errorf("network %s's group %s asks for AS %d, graceful restart %ds; the speaker keeps AS %d, %ds from group %s",
				n.Name, path, g.BGP.ASN, g.BGP.GracefulRestartSeconds, conf.ASN, conf.GracefulRestartSeconds, conf.From))
		}
		for _, p := range g.BGP.Peers {
			if _, dup := peers[p.Address]; !dup {
				peers[p.Address] = p
			}
		}
		in := InputFrom(n, v.Hosts, v.Blocks[n.Name], v.Groups[n.Name], nil)
		ps, err := Advertisements(in, v.Host)
		if err != nil {
			warns = append(warns, fmt.Errorf("network %s: %w", n.Name, err))
			continue
		}
		cfg.Prefixes = append(cfg.Prefixes, ps...)
	}
	warn = errors.Join(warns...)
	if conf == nil {
		return SpeakerConfig{}, false, warn
	}
	cfg.ASN, cfg.GracefulRestartSeconds = conf.ASN, conf.GracefulRestartSeconds
	if own.ASN != 0 {
		cfg.ASN = own.ASN
	}
	if len(own.Peers) > 0 {
		for _, p := range own.Peers {
			if tp, ok := peers[p.Address]; ok {
				if p.Port == 0 {
					p.Port = tp.Port
				}
				if p.Password == "" {
					p.Password = tp.Password
				}
			}
			cfg.Peers = append(cfg.Peers, p)
		}
	} else {
		for _, p := range peers {
			cfg.Peers = append(cfg.Peers, p)
		}
		slices.SortFunc(cfg.Peers, func(a, b topology.BGPPeer) int { return a.Address.Compare(b.Address) })
	}
	cfg.Prefixes = slices.Compact(netx.Sort(cfg.Prefixes))
	return cfg, true, warn
}
