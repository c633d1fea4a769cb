package gobgp

import (
	"context"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v4/api"

	"github.com/terrane-net/terrane/internal/bgp"
)

// Status reports the sessions and the announced prefixes.
func (s *Speaker) Status(ctx context.Context) (bgp.Status, error) {
	s.mu.Lock()
	st := bgp.Status{RouterID: s.cfg.RouterID, ASN: s.cfg.ASN, GracefulRestart: s.cfg.GracefulRestart}
	for p := range s.announced {
		st.Announced = append(st.Announced, p)
	}
	stopped := s.stopped
	s.mu.Unlock()
	slices.SortFunc(st.Announced, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	if stopped {
		return st, nil
	}
	now := time.Now()
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		addr, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
		if err != nil {
			return
		}
		addr = addr.Unmap()
		ps := bgp.PeerStatus{Address: addr, ASN: p.GetConf().GetPeerAsn()}
		s.smu.Lock()
		seen := s.since[addr]
		s.smu.Unlock()
		ps.State, ps.Since, ps.LastError = seen.state, seen.since, seen.err
		if ps.State == "" {
			ps.State = sessionState(p.GetState().GetSessionState())
		}
		if ps.State == StateEstablished {
			if up := p.GetTimers().GetState().GetUptime(); up != nil && up.AsTime().Unix() > 0 {
				ps.Since = up.AsTime()
			}
			ps.Uptime = now.Sub(ps.Since).Truncate(time.Second)
			for _, af := range p.GetAfiSafis() {
				ps.PrefixesSent += af.GetState().GetAdvertised()
				ps.PrefixesReceived += af.GetState().GetReceived()
			}
		}
		if m := p.GetState().GetDisconnectMessage(); m != "" {
			ps.LastError = m
		}
		st.Peers = append(st.Peers, ps)
	})
	slices.SortFunc(st.Peers, func(a, b bgp.PeerStatus) int { return a.Address.Compare(b.Address) })
	return st, err
}

func sessionState(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_SESSION_STATE_IDLE:
		return "idle"
	case api.PeerState_SESSION_STATE_CONNECT:
		return "connect"
	case api.PeerState_SESSION_STATE_ACTIVE:
		return "active"
	case api.PeerState_SESSION_STATE_OPENSENT:
		return "opensent"
	case api.PeerState_SESSION_STATE_OPENCONFIRM:
		return "openconfirm"
	case api.PeerState_SESSION_STATE_ESTABLISHED:
		return StateEstablished
	}
	return "unknown"
}
