package gobgp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	packet "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/terrane-net/terrane/internal/bgp"
)

// pair is a host speaker (connects out, never listens) and a ToR speaker
// (listens, passive towards the host), each in-process on its own loopback
// address.
type pair struct {
	host, tor         *Speaker
	hostAddr, torAddr netip.Addr
	torPort           int
}

const (
	hostASN = 64601
	torASN  = 65001
)

// freePort finds a TCP port free on addr.
func freePort(t *testing.T, addr netip.Addr) int {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newPair starts both sides on 127.0.0.<n> (ToR) and 127.0.0.<n+1> (host).
// The ToR's password for the host is torPassword; the ToR keeps the host's
// routes for grTor when the session drops (0: it is no graceful-restart
// helper).
func newPair(t *testing.T, n int, torPassword string, grTor time.Duration) *pair {
	t.Helper()
	p := &pair{torAddr: netip.AddrFrom4([4]byte{127, 0, 0, byte(n)}), hostAddr: netip.AddrFrom4([4]byte{127, 0, 0, byte(n + 1)})}
	p.torPort = freePort(t, p.torAddr)
	ctx := context.Background()
	tor, err := Start(ctx, bgp.Config{RouterID: p.torAddr, ASN: torASN, ListenPort: p.torPort, GracefulRestart: grTor})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tor.Stop(context.Background(), false) })
	if err := tor.Apply(ctx, bgp.Desired{Peers: []bgp.Peer{{Address: p.hostAddr, ASN: hostASN, Password: torPassword, Passive: true}}}); err != nil {
		t.Fatal(err)
	}
	p.tor = tor
	p.host = p.startHost(t, 120*time.Second)
	return p
}

func (p *pair) startHost(t *testing.T, gr time.Duration) *Speaker {
	t.Helper()
	host, err := Start(context.Background(), bgp.Config{RouterID: p.hostAddr, ASN: hostASN, GracefulRestart: gr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Stop(context.Background(), false) })
	return host
}

func (p *pair) torPeer(password string) bgp.Peer {
	return bgp.Peer{Address: p.torAddr, ASN: torASN, Port: p.torPort, Password: password}
}

// torRoute is one route as the ToR holds it.
type torRoute struct {
	prefix, nextHop, asPath string
	stale                   bool
}

func (r torRoute) String() string {
	s := fmt.Sprintf("%s via %s as [%s]", r.prefix, r.nextHop, r.asPath)
	if r.stale {
		s += " stale"
	}
	return s
}

// torRoutes lists what the ToR learned, sorted.
func (p *pair) torRoutes(t *testing.T) []string {
	t.Helper()
	var out []string
	err := p.tor.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: packet.RF_IPv4_UC}, func(nlri packet.NLRI, paths []*apiutil.Path) {
		for _, path := range paths {
			r := torRoute{prefix: nlri.String(), stale: path.Stale}
			for _, a := range path.Attrs {
				switch a := a.(type) {
				case *packet.PathAttributeNextHop:
					r.nextHop = a.Value.String()
				case *packet.PathAttributeAsPath:
					r.asPath = strings.Trim(strings.TrimPrefix(strings.Trim(a.String(), "{}"), "AsPath: "), "[]")
				}
			}
			out = append(out, r.String())
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// waitRoutes waits until the ToR holds exactly want.
func (p *pair) waitRoutes(t *testing.T, what string, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(15 * time.Second)
	var got []string
	for time.Now().Before(deadline) {
		if got = p.torRoutes(t); slices.Equal(got, want) || (len(got) == 0 && len(want) == 0) {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: the ToR holds %q, want %q", what, got, want)
	return 0
}

func (p *pair) route(prefix string) string {
	return torRoute{prefix: prefix, nextHop: p.hostAddr.String(), asPath: fmt.Sprint(hostASN)}.String()
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func statusOf(t *testing.T, s *Speaker, addr netip.Addr) bgp.PeerStatus {
	t.Helper()
	st, err := s.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st.Peers {
		if p.Address == addr {
			return p
		}
	}
	return bgp.PeerStatus{}
}

// TestSpeakerAnnounceWithdraw: the ToR learns exactly the applied prefixes
// with the host as next hop and the host's AS as path; a prefix dropped
// from the desired set is withdrawn, one added is announced, the others
// stay; removing the peer takes every route away from it. Status reports
// the session and the announced set.
func TestSpeakerAnnounceWithdraw(t *testing.T) {
	p := newPair(t, 10, "", 0)
	ctx := context.Background()
	if err := p.host.Apply(ctx, bgp.Desired{Peers: []bgp.Peer{p.torPeer("")}, Prefixes: prefixes("10.20.0.0/27", "10.20.0.64/26")}); err != nil {
		t.Fatal(err)
	}
	took := p.waitRoutes(t, "first announcement", p.route("10.20.0.0/27"), p.route("10.20.0.64/26"))
	t.Logf("session up and routes at the ToR %s after Apply", took)

	st, err := p.host.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.RouterID != p.hostAddr || st.ASN != hostASN || st.GracefulRestart != 120*time.Second || !slices.Equal(st.Announced, prefixes("10.20.0.0/27", "10.20.0.64/26")) {
		t.Errorf("status %+v: want router ID %s, AS %d, GR 120s, both prefixes announced", st, p.hostAddr, hostASN)
	}
	if len(st.Peers) != 1 {
		t.Fatalf("status peers %+v: want the ToR", st.Peers)
	}
	ps := st.Peers[0]
	if ps.Address != p.torAddr || ps.ASN != torASN || ps.State != StateEstablished || ps.Since.IsZero() || time.Since(ps.Since) > time.Minute || ps.PrefixesSent != 2 || ps.PrefixesReceived != 0 {
		t.Errorf("peer status %+v: want %s AS %d established since just now, 2 prefixes sent, none received", ps, p.torAddr, torASN)
	}

	// Withdraw one, keep one, add one: only the difference moves.
	if err := p.host.Apply(ctx, bgp.Desired{Peers: []bgp.Peer{p.torPeer("")}, Prefixes: prefixes("10.20.0.64/26", "10.20.1.0/24")}); err != nil {
		t.Fatal(err)
	}
	took = p.waitRoutes(t, "after a change", p.route("10.20.0.64/26"), p.route("10.20.1.0/24"))
	t.Logf("change reached the ToR in %s", took)
	// The same desired state again changes nothing.
	if err := p.host.Apply(ctx, bgp.Desired{Peers: []bgp.Peer{p.torPeer("")}, Prefixes: prefixes("10.20.1.0/24", "10.20.0.64/26")}); err != nil {
		t.Fatal(err)
	}
	if got := statusOf(t, p.host, p.torAddr); got.State != StateEstablished || !got.Since.Equal(ps.Since) {
		t.Errorf("an unchanged Apply touched the session: %+v, was established since %s", got, ps.Since)
	}
	// Empty: everything withdrawn, the session stays.
	if err := p.host.Apply(ctx, bgp.Desired{Peers: []bgp.Peer{p.torPeer("")}}); err != nil {
		t.Fatal(err)
	}
	p.waitRoutes(t, "all withdrawn")
	if got := statusOf(t, p.host, p.torAddr).State; got != StateEstablished {
		t.Errorf("session %s after withdrawing everything; want it kept", got)
	}
	// Announce again, then remove the peer: the ToR drops the session and
	// with it the routes (a Cease: no graceful restart).
	if err := p.host.Apply(ctx, bgp.Desired{Peers: []bgp.Peer{p.torPeer("")}, Prefixes: prefixes("10.20.2.0/24")}); err != nil {
		t.Fatal(err)
	}
	p.waitRoutes(t, "announced again", p.route("10.20.2.0/24"))
	if err := p.host.Apply(ctx, bgp.Desired{Prefixes: prefixes("10.20.2.0/24")}); err != nil {
		t.Fatal(err)
	}
	p.waitRoutes(t, "peer removed")
	if st, _ := p.host.Status(ctx); len(st.Peers) != 0 || len(st.Announced) != 1 {
		t.Errorf("status after removing the peer: %+v; want no peers, the prefix still announced (to nobody)", st)
	}
	waitNotEstablished(t, p.tor, p.hostAddr)
}

func waitNotEstablished(t *testing.T, s *Speaker, addr netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if statusOf(t, s, addr).State != StateEstablished {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the session with %s stayed established", addr)
}

// TestSpeakerMD5: with the ToR's password the session comes up (so the
// kernel signs); with another password the ToR's kernel drops the
// segments and the session never establishes; fixing the password (a
// changed peer is replaced) brings it up.
func TestSpeakerMD5(t *testing.T) {
	p := newPair(t, 20, "rack-1-secret", 0)
	ctx := context.Background()
	if err := p.host.Apply(ctx, bgp.Desired{Peers: []bgp.Peer{p.torPeer("wrong")}, Prefixes: prefixes("10.30.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	// Two connect attempts (the first after about 2 s, then every 5 s).
	time.Sleep(8 * time.Second)
	if got := statusOf(t, p.host, p.torAddr); got.State == StateEstablished {
		t.Fatalf("session established with the wrong MD5 password: %+v", got)
	}
	if got := p.torRoutes(t); len(got) != 0 {
		t.Fatalf("the ToR learned %v over a session with the wrong password", got)
	}
	if err := p.host.Apply(ctx, bgp.Desired{Peers: []bgp.Peer{p.torPeer("rack-1-secret")}, Prefixes: prefixes("10.30.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	p.waitRoutes(t, "right password", p.route("10.30.0.0/24"))
}

// TestSpeakerGracefulRestart: a speaker whose sessions close without a
// Cease (a crash, or Stop keeping routes) leaves its routes at a
// graceful-restart helper, stale; a new speaker for the same host takes
// them over. A Stop with a Cease removes them at once.
func TestSpeakerGracefulRestart(t *testing.T) {
	if raceEnabled {
		t.Skip("GoBGP's graceful-restart helper races on stale marks (see race_on_test.go); run without -race, or see TestPrivilegedBIRD*")
	}
	p := newPair(t, 30, "", 120*time.Second)
	ctx := context.Background()
	want := bgp.Desired{Peers: []bgp.Peer{p.torPeer("")}, Prefixes: prefixes("10.40.0.0/24")}
	if err := p.host.Apply(ctx, want); err != nil {
		t.Fatal(err)
	}
	p.waitRoutes(t, "announced", p.route("10.40.0.0/24"))
	if err := p.host.Stop(ctx, true); err != nil {
		t.Fatal(err)
	}
	stale := p.route("10.40.0.0/24") + " stale"
	p.waitRoutes(t, "kept stale after the speaker went away", stale)
	time.Sleep(time.Second)
	p.waitRoutes(t, "still kept a second later", stale)

	next := p.startHost(t, 120*time.Second)
	if err := next.Apply(ctx, want); err != nil {
		t.Fatal(err)
	}
	took := p.waitRoutes(t, "taken over by the restarted speaker", p.route("10.40.0.0/24"))
	t.Logf("restarted speaker refreshed the stale route in %s", took)
	if err := next.Stop(ctx, false); err != nil {
		t.Fatal(err)
	}
	p.waitRoutes(t, "withdrawn by a Cease")
}

func TestStartRefusesBadConfig(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []bgp.Config{
		{RouterID: netip.MustParseAddr("fd00::1"), ASN: 1},
		{RouterID: netip.MustParseAddr("127.0.0.1")},
		{RouterID: netip.MustParseAddr("127.0.0.1"), ASN: 1, GracefulRestart: 4096 * time.Second},
	} {
		if s, err := Start(ctx, cfg); err == nil {
			_ = s.Stop(ctx, false)
			t.Errorf("Start(%+v) succeeded; want an error", cfg)
		}
	}
}

func TestApplyRefusesIPv6(t *testing.T) {
	s, err := Start(context.Background(), bgp.Config{RouterID: netip.MustParseAddr("127.0.0.50"), ASN: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background(), false)
	err = s.Apply(context.Background(), bgp.Desired{Prefixes: prefixes("fd00::/64", "10.0.0.0/24")})
	if err == nil || !strings.Contains(err.Error(), "only IPv4") {
		t.Fatalf("Apply with an IPv6 prefix: %v; want a refusal", err)
	}
	if st, _ := s.Status(context.Background()); !slices.Equal(st.Announced, prefixes("10.0.0.0/24")) {
		t.Errorf("announced %v; the IPv4 prefix should still be announced", st.Announced)
	}
}
