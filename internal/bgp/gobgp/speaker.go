// Package gobgp is the node's BGP speaker: GoBGP embedded as a library,
// driven by desired state (the types of internal/bgp). The agent computes what the host announces and to whom
// (routing.Advertisements, the topology's peers); Apply makes the speaker
// match, changing only the difference. It is the only package that imports
// GoBGP (internal/archtest).
//
// The speaker never listens: it connects out to its peers from the host's
// address, announces IPv4 unicast prefixes with the host's address as next
// hop, advertises graceful restart (RFC 4724) so a restarting agent does not
// blackhole traffic, and signs sessions with TCP MD5 when a peer has a
// password.
package gobgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	packet "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/terrane-net/terrane/internal/bgp"
)

// Timers the speaker runs with. ConnectRetry is short so a ToR that comes
// back is reconnected within seconds (GoBGP's default is 120 s);
// DeferralTime bounds how long a restarted speaker waits for its peers'
// End-of-RIB before announcing anyway.
const (
	ConnectRetry  = 5 * time.Second
	HoldTime      = 90 * time.Second
	DeferralTime  = 10 * time.Second
	defaultListen = -1 // never accept sessions
)

func peerPort(p bgp.Peer) int {
	if p.Port == 0 {
		return bgp.DefaultPort
	}
	return p.Port
}

// Speaker is a running BGP speaker. Its methods are safe for concurrent
// use; Apply calls are serialised.
type Speaker struct {
	cfg bgp.Config
	log *slog.Logger
	srv *server.BgpServer
	// started is when Start returned: a peer added within the graceful
	// restart time after it may hold routes of this host's previous
	// speaker, so it is told this speaker is restarting.
	started time.Time

	mu        sync.Mutex // serialises Apply and Stop; guards the fields below
	peers     map[netip.Addr]bgp.Peer
	announced map[netip.Prefix]bool
	stopped   bool

	smu   sync.Mutex // guards since (written from GoBGP's watch goroutine)
	since map[netip.Addr]peerState
}

type peerState struct {
	state string
	since time.Time
	err   string
}

// startMu serialises GoBGP's StartBgp, which writes package-level route
// selection options: two speakers starting at once (tests) would race.
var startMu sync.Mutex

// Start runs a speaker. It returns once GoBGP accepts the global
// configuration; sessions come up as peers are applied.
func Start(ctx context.Context, cfg bgp.Config) (*Speaker, error) {
	if !cfg.RouterID.Is4() {
		return nil, fmt.Errorf("bgp: router ID %v: want the host's IPv4 address", cfg.RouterID)
	}
	if cfg.NextHop6.IsValid() && (!cfg.NextHop6.Is6() || cfg.NextHop6.Is4In6() || cfg.NextHop6.IsLinkLocalUnicast()) {
		return nil, fmt.Errorf("bgp: IPv6 next hop %v: want the host's global (or unique local) IPv6 address", cfg.NextHop6)
	}
	if cfg.ASN == 0 {
		return nil, errors.New("bgp: AS number 0 is reserved")
	}
	if cfg.GracefulRestart < 0 || cfg.GracefulRestart > 4095*time.Second {
		return nil, fmt.Errorf("bgp: graceful restart %s: want 0 to 4095s", cfg.GracefulRestart)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Speaker{cfg: cfg, log: cfg.Log, peers: map[netip.Addr]bgp.Peer{}, announced: map[netip.Prefix]bool{}, since: map[netip.Addr]peerState{}}
	s.srv = server.NewBgpServer(server.LoggerOption(cfg.Log.With("component", "gobgp"), nil))
	go s.srv.Serve()
	global := &api.Global{Asn: cfg.ASN, RouterId: cfg.RouterID.String(), ListenPort: defaultListen}
	if cfg.ListenPort > 0 {
		global.ListenPort = int32(cfg.ListenPort)
		global.ListenAddresses = []string{cfg.RouterID.String()}
	}
	startMu.Lock()
	err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: global})
	startMu.Unlock()
	if err != nil {
		s.srv.Stop()
		return nil, fmt.Errorf("bgp: start: %w", err)
	}
	err = s.srv.WatchEvent(context.Background(), server.WatchEventMessageCallbacks{OnPeerUpdate: s.peerEvent}, server.WatchPeer())
	if err != nil {
		s.srv.Stop()
		return nil, fmt.Errorf("bgp: watch peers: %w", err)
	}
	s.started = time.Now()
	return s, nil
}

// peerEvent records when each peer entered its state.
func (s *Speaker) peerEvent(ev *apiutil.WatchEventMessage_PeerEvent, t time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	addr := ev.Peer.State.NeighborAddress.Unmap()
	st := stateName(ev.Peer.State.SessionState)
	s.smu.Lock()
	prev, ok := s.since[addr]
	if !ok || prev.state != st {
		s.since[addr] = peerState{state: st, since: t, err: ev.Peer.State.DisconnectMessage}
	}
	s.smu.Unlock()
	if s.cfg.OnChange != nil && (!ok || prev.state != st) {
		s.cfg.OnChange()
	}
}

func stateName(st packet.FSMState) string {
	switch st {
	case packet.BGP_FSM_IDLE:
		return "idle"
	case packet.BGP_FSM_CONNECT:
		return "connect"
	case packet.BGP_FSM_ACTIVE:
		return "active"
	case packet.BGP_FSM_OPENSENT:
		return "opensent"
	case packet.BGP_FSM_OPENCONFIRM:
		return "openconfirm"
	case packet.BGP_FSM_ESTABLISHED:
		return StateEstablished
	}
	return "unknown"
}

// StateEstablished is the state of a session that exchanges routes.
const StateEstablished = "established"

// Apply makes the speaker keep exactly d's sessions and announce exactly
// d's prefixes, changing only what differs: new prefixes are announced
// before new peers are added (so a peer's first update, and the End-of-RIB
// a restarted speaker owes its peers, carries the whole set), removed
// prefixes are withdrawn, removed peers get a Cease. A peer whose ASN, port
// or password changed is replaced. What fails is retried by the next
// Apply.
func (s *Speaker) Apply(ctx context.Context, d bgp.Desired) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("bgp: speaker stopped")
	}
	want := map[netip.Prefix]bool{}
	var errs []error
	for _, p := range d.Prefixes {
		if !p.Addr().Is4() && !s.cfg.NextHop6.IsValid() {
			errs = append(errs, fmt.Errorf("announce %s: an IPv6 prefix needs the host's IPv6 address as next hop (the agent's --ip6); only IPv4 prefixes go with the IPv4 next hop %s", p, s.cfg.RouterID))
			continue
		}
		want[p.Masked()] = true
	}
	var add, del []netip.Prefix
	for p := range want {
		if !s.announced[p] {
			add = append(add, p)
		}
	}
	for p := range s.announced {
		if !want[p] {
			del = append(del, p)
		}
	}
	if len(add) > 0 {
		if err := s.paths(add, false); err != nil {
			errs = append(errs, fmt.Errorf("announce %v: %w", add, err))
		} else {
			for _, p := range add {
				s.announced[p] = true
			}
		}
	}
	if len(del) > 0 {
		if err := s.paths(del, true); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %v: %w", del, err))
		} else {
			for _, p := range del {
				delete(s.announced, p)
			}
		}
	}
	wantPeers := map[netip.Addr]bgp.Peer{}
	for _, p := range d.Peers {
		p.Address = p.Address.Unmap()
		if _, dup := wantPeers[p.Address]; dup {
			errs = append(errs, fmt.Errorf("peer %s is listed twice", p.Address))
			continue
		}
		wantPeers[p.Address] = p
	}
	for addr, have := range s.peers {
		if want, ok := wantPeers[addr]; ok && want == have {
			continue
		}
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
			errs = append(errs, fmt.Errorf("remove peer %s: %w", addr, err))
			continue
		}
		delete(s.peers, addr)
		s.smu.Lock()
		delete(s.since, addr)
		s.smu.Unlock()
	}
	for _, addr := range sortedAddrs(wantPeers) {
		p := wantPeers[addr]
		if _, ok := s.peers[addr]; ok {
			continue
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(p)}); err != nil {
			errs = append(errs, fmt.Errorf("add peer %s AS %d: %w", addr, p.ASN, err))
			continue
		}
		s.peers[addr] = p
		s.smu.Lock()
		if _, ok := s.since[addr]; !ok {
			s.since[addr] = peerState{state: "idle", since: time.Now()}
		}
		s.smu.Unlock()
	}
	if s.cfg.OnChange != nil && (len(add) > 0 || len(del) > 0) {
		s.cfg.OnChange()
	}
	return errors.Join(errs...)
}

func sortedAddrs(m map[netip.Addr]bgp.Peer) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// apiPeer is GoBGP's configuration of a peer.
func (s *Speaker) apiPeer(p bgp.Peer) *api.Peer {
	gr := uint32(s.cfg.GracefulRestart / time.Second)
	family := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	ap := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN, AuthPassword: p.Password},
		Transport: &api.Transport{
			LocalAddress: s.cfg.RouterID.String(),
			RemotePort:   uint32(peerPort(p)),
			PassiveMode:  p.Passive,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:           uint64(ConnectRetry / time.Second),
			HoldTime:               uint64(HoldTime / time.Second),
			KeepaliveInterval:      uint64(HoldTime / 3 / time.Second),
			IdleHoldTimeAfterReset: uint64(ConnectRetry / time.Second),
		}},
		AfiSafis: []*api.AfiSafi{{
			Config:            &api.AfiSafiConfig{Family: family, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: gr > 0}},
		}},
	}
	if s.cfg.NextHop6.IsValid() {
		ap.AfiSafis = append(ap.AfiSafis, &api.AfiSafi{
			Config:            &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: gr > 0}},
		})
	}
	if gr > 0 {
		ap.GracefulRestart = &api.GracefulRestart{
			Enabled:      true,
			RestartTime:  gr,
			DeferralTime: uint32(DeferralTime / time.Second),
			// RFC 4724 4.1: a speaker that may have had a previous
			// incarnation sets the Restart State bit (and, through GoBGP,
			// the forwarding bit: the host's kernel routes survived the
			// agent), so the peer keeps the stale routes until this
			// speaker's End-of-RIB instead of flushing them at once.
			LocalRestarting: time.Since(s.started) < s.cfg.GracefulRestart,
		}
	}
	return ap
}

// paths announces or withdraws prefixes with the host as next hop.
func (s *Speaker) paths(ps []netip.Prefix, withdraw bool) error {
	nh, err := packet.NewPathAttributeNextHop(s.cfg.RouterID)
	if err != nil {
		return err
	}
	list := make([]*apiutil.Path, 0, len(ps))
	for _, p := range ps {
		nlri, err := packet.NewIPAddrPrefix(p)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		path := &apiutil.Path{
			Family:     packet.RF_IPv4_UC,
			Nlri:       nlri,
			Attrs:      []packet.PathAttributeInterface{packet.NewPathAttributeOrigin(packet.BGP_ORIGIN_ATTR_TYPE_IGP), nh},
			Withdrawal: withdraw,
		}
		if p.Addr().Is6() {
			// Multiprotocol: the NLRI and its IPv6 next hop travel in
			// MP_REACH_NLRI (RFC 4760), not in NEXT_HOP.
			mp, err := packet.NewPathAttributeMpReachNLRI(packet.RF_IPv6_UC, []packet.PathNLRI{{NLRI: nlri}}, s.cfg.NextHop6)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			path.Family = packet.RF_IPv6_UC
			path.Attrs = []packet.PathAttributeInterface{packet.NewPathAttributeOrigin(packet.BGP_ORIGIN_ATTR_TYPE_IGP), mp}
		}
		list = append(list, path)
	}
	if withdraw {
		return s.srv.DeletePath(apiutil.DeletePathRequest{Paths: list})
	}
	_, err = s.srv.AddPath(apiutil.AddPathRequest{Paths: list})
	return err
}

// Stop ends the speaker. By default every peer gets a Cease and drops this
// host's routes at once. With keepRoutes (a planned restart of the agent)
// the sessions are closed without a Cease, so peers that negotiated
// graceful restart keep the routes, stale, for the restart time; a new
// speaker that comes up within it takes them over without a gap.
func (s *Speaker) Stop(ctx context.Context, keepRoutes bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	if !keepRoutes || s.cfg.GracefulRestart == 0 {
		s.srv.Stop() // a Cease to every peer, then the rest of GoBGP
		return nil
	}
	// No Cease: the sessions just close. GoBGP's BFD goroutine stays until
	// the process exits, which is when this is used.
	if err := s.srv.StopBgp(ctx, &api.StopBgpRequest{AllowGracefulRestart: true}); err != nil {
		return fmt.Errorf("bgp: stop: %w", err)
	}
	return nil
}

// Config returns what the speaker was started with.
func (s *Speaker) Config() bgp.Config { return s.cfg }

// String names the speaker for logs.
func (s *Speaker) String() string {
	return "bgp speaker " + s.cfg.RouterID.String() + " AS " + strconv.FormatUint(uint64(s.cfg.ASN), 10)
}
