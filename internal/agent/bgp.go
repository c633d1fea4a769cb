package agent

// The agent's BGP part: on every sync, for each network where the host's
// leaf group routes by bgp, what the routing core says the host announces
// (routing.Advertisements, from the same input as its kernel routes), to
// the peers the topology (or the host's flags) names. The speaker changes
// only the difference. Its status goes to the server, on change and at
// most every BGPReportInterval.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/bgp"
	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/topology"
)

// BGPSpeaker is the speaker the agent drives (*gobgp.Speaker).
type BGPSpeaker interface {
	Apply(ctx context.Context, d bgp.Desired) error
	Status(ctx context.Context) (bgp.Status, error)
	Stop(ctx context.Context, keepRoutes bool) error
}

// StartSpeaker starts a speaker. cmd/terrane passes GoBGP's
// (gobgp.Start), which the agent does not link; tests pass a fake.
type StartSpeaker func(ctx context.Context, cfg bgp.Config) (BGPSpeaker, error)

// BGPReporter takes the speaker's status to the server (*client.Client).
type BGPReporter interface {
	ReportBGP(ctx context.Context, host string, st api.BGPStatus) error
}

// BGPOptions are the host's BGP settings besides the topology's.
type BGPOptions struct {
	// Peers replace the topology's peers for this host (--bgp-peer).
	Peers []topology.BGPPeer
	// ASN replaces the topology's AS number for this host (--bgp-asn; 0:
	// the topology's).
	ASN uint32
	// KeepRoutesOnExit stops the speaker without a Cease when the agent
	// exits, so peers keep the routes for the graceful-restart time (a
	// planned restart); by default they are withdrawn at once.
	KeepRoutesOnExit bool
	// Start starts a speaker; nil when the host may not run one (a
	// network that routes by bgp is then reported as an error).
	Start StartSpeaker
	// Reporter receives the status (nil: the Server, if it can).
	Reporter BGPReporter
	// ReportInterval is the least time between two reports (0: 5 s).
	ReportInterval time.Duration
}

// bgpState is the speaker the sync loop owns. The sync loop writes
// speaker, cfg and lastErr under Agent.bgpMu; the reporter reads them.
type bgpState struct {
	speaker BGPSpeaker
	cfg     bgp.Config
	lastErr string
	logged  string        // the last sync error logged, to log each once
	changed chan struct{} // a report is due
}

// bgpDesired is what the speaker should run with and do, as the routing
// core computes it from the state the agent follows (routing.HostBGP); ok
// is false when no network of the host routes by bgp (no speaker then).
func (a *Agent) bgpDesired() (cfg bgp.Config, d bgp.Desired, ok bool, warn error) {
	a.mu.Lock()
	sc, ok, warn := routing.HostBGP(a.view(), routing.BGPOverrides{ASN: a.cfg.BGP.ASN, Peers: a.cfg.BGP.Peers})
	a.mu.Unlock()
	if !ok {
		return cfg, d, false, warn
	}
	// With --ip6 the sessions carry IPv6 unicast too, next hop the
	// host's IPv6 address.
	cfg = bgp.Config{RouterID: a.cfg.IP, NextHop6: a.cfg.IP6, ASN: sc.ASN, GracefulRestart: time.Duration(sc.GracefulRestartSeconds) * time.Second}
	for _, p := range sc.Peers {
		d.Peers = append(d.Peers, bgp.Peer{Address: p.Address, ASN: p.ASN, Port: p.Port, Password: p.Password})
	}
	d.Prefixes = sc.Prefixes
	return cfg, d, true, warn
}

// syncBGP makes the speaker match the state: started when a network of
// the host first routes by bgp, restarted when its AS or restart time
// changes, stopped (with a Cease) when none does any more. Called by the
// sync loop only.
func (a *Agent) syncBGP(ctx context.Context) error {
	cfg, d, ok, warn := a.bgpDesired()
	if warn != nil {
		a.log.Warn("bgp", "err", warn)
	}
	b := &a.bgp
	if b.speaker != nil && (!ok || !sameConfig(b.cfg, cfg)) {
		if err := b.speaker.Stop(ctx, false); err != nil {
			a.log.Warn("stopping the BGP speaker", "err", err)
		}
		a.log.Info("BGP speaker stopped", "asn", b.cfg.ASN)
		a.setSpeaker(nil, b.cfg, "")
		a.bgpChanged()
	}
	if !ok {
		return nil
	}
	if b.speaker == nil {
		if a.cfg.BGP.Start == nil {
			return a.bgpFail(errors.New("the host's group routes by bgp, but this agent has no BGP speaker"))
		}
		if !cfg.RouterID.Is4() {
			return a.bgpFail(fmt.Errorf("bgp needs an IPv4 --ip (the router ID and next hop); %v is not", cfg.RouterID))
		}
		cfg.OnChange = a.bgpChanged
		cfg.Log = a.log.With("component", "bgp")
		s, err := a.cfg.BGP.Start(ctx, cfg)
		if err != nil {
			return a.bgpFail(fmt.Errorf("start the BGP speaker: %w", err))
		}
		a.setSpeaker(s, cfg, "")
		a.log.Info("BGP speaker started", "router_id", cfg.RouterID, "asn", cfg.ASN, "graceful_restart", cfg.GracefulRestart)
	}
	err := b.speaker.Apply(ctx, d)
	a.bgpChanged()
	if err != nil {
		return a.bgpFail(fmt.Errorf("bgp: %w", err))
	}
	a.setSpeaker(b.speaker, b.cfg, "")
	return nil
}

// setSpeaker records the running speaker and the last error; the sync
// loop writes, the reporter reads.
func (a *Agent) setSpeaker(s BGPSpeaker, cfg bgp.Config, lastErr string) {
	a.bgpMu.Lock()
	a.bgp.speaker, a.bgp.cfg, a.bgp.lastErr = s, cfg, lastErr
	a.bgpMu.Unlock()
}

func (a *Agent) bgpFail(err error) error {
	a.bgpMu.Lock()
	a.bgp.lastErr = err.Error()
	a.bgpMu.Unlock()
	a.bgpChanged()
	return err
}

func sameConfig(x, y bgp.Config) bool {
	return x.RouterID == y.RouterID && x.NextHop6 == y.NextHop6 && x.ASN == y.ASN && x.GracefulRestart == y.GracefulRestart
}

// stopBGP ends the speaker when the agent exits: a Cease to every peer,
// or with KeepRoutesOnExit a close that leaves the routes at peers for the
// graceful-restart time.
func (a *Agent) stopBGP() {
	if a.bgp.speaker == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.bgp.speaker.Stop(ctx, a.cfg.BGP.KeepRoutesOnExit); err != nil {
		a.log.Warn("stopping the BGP speaker", "err", err)
	}
	a.setSpeaker(nil, a.bgp.cfg, "")
	a.reportBGPStopped()
}

// bgpChanged asks for a status report; it never blocks.
func (a *Agent) bgpChanged() {
	select {
	case a.bgp.changed <- struct{}{}:
	default:
	}
}

// bgpStatus is the speaker's status as the server keeps it; ok is false
// when the host runs no speaker and has nothing to say.
func (a *Agent) bgpStatus(ctx context.Context) (api.BGPStatus, bool) {
	a.bgpMu.Lock()
	s, lastErr := a.bgp.speaker, a.bgp.lastErr
	a.bgpMu.Unlock()
	st := api.BGPStatus{Host: a.cfg.Host, Peers: []api.BGPPeerStatus{}, Announced: []netip.Prefix{}, Error: lastErr}
	if s == nil {
		return st, lastErr != ""
	}
	bs, err := s.Status(ctx)
	if err != nil {
		st.Error = "status: " + err.Error()
	}
	st.RouterID, st.ASN, st.GracefulRestartSeconds = bs.RouterID, bs.ASN, int(bs.GracefulRestart/time.Second)
	st.Announced = append(st.Announced, bs.Announced...)
	for _, p := range bs.Peers {
		st.Peers = append(st.Peers, api.BGPPeerStatus{Address: p.Address, ASN: p.ASN, State: p.State, Since: p.Since.UTC().Truncate(time.Second),
			PrefixesSent: p.PrefixesSent, PrefixesReceived: p.PrefixesReceived, LastError: p.LastError})
	}
	return st, true
}

// reportBGP sends the status to the server when it differs from the last
// one sent, at most every ReportInterval; a failed report is retried.
func (a *Agent) reportBGP(ctx context.Context) {
	r := a.cfg.BGP.Reporter
	if r == nil {
		return
	}
	var last *api.BGPStatus
	var sent time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.bgp.changed:
		}
		if !sleep(ctx, a.cfg.BGP.ReportInterval-time.Since(sent)) {
			return
		}
		select { // changes while waiting are in the status read now
		case <-a.bgp.changed:
		default:
		}
		st, ok := a.bgpStatus(ctx)
		if (!ok && last == nil) || (last != nil && reflect.DeepEqual(*last, st)) {
			continue
		}
		sent = time.Now()
		if err := r.ReportBGP(ctx, a.cfg.Host, st); err != nil {
			if ctx.Err() == nil {
				a.log.Warn("reporting BGP status", "err", err)
				time.AfterFunc(a.cfg.BGP.ReportInterval, a.bgpChanged)
			}
			continue
		}
		last = &st
	}
}

// reportBGPStopped tells the server the speaker is gone, when the agent
// exits after having reported.
func (a *Agent) reportBGPStopped() {
	if a.cfg.BGP.Reporter == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st := api.BGPStatus{Host: a.cfg.Host, Peers: []api.BGPPeerStatus{}, Announced: []netip.Prefix{}, Error: "the agent stopped"}
	if err := a.cfg.BGP.Reporter.ReportBGP(ctx, a.cfg.Host, st); err != nil {
		a.log.Debug("reporting the stopped BGP speaker", "err", err)
	}
}
