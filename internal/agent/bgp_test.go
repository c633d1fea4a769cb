package agent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/bgp"
	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// bgpTopology: rack 1 announces its hosts' blocks to two ToRs, rack 2 its
// group's prefixes; both inherit the fabric's bgp block.
const bgpTopology = `networks:
  - {name: pods, cidr: 10.10.0.0/16, blockSize: 28, default: true}
topologies:
  - networks: [pods]
    groups:
      - name: fabric
        routing: bgp
        bgp:
          asn: 64601
          peers:
            - {address: 192.168.1.1, asn: 65001}
            - {address: 192.168.1.2, asn: 65001, password: s3cret}
          gracefulRestart: 90s
        groups:
          - {name: rack-1, advertise: blocks, assignment: {matchLabels: {rack: "1"}}}
          - {name: rack-2, advertise: group, assignment: {matchLabels: {rack: "2"}}}
`

// fakeSpeaker records what the agent asks of its speaker.
type fakeSpeaker struct {
	mu      sync.Mutex
	cfg     bgp.Config
	applied []bgp.Desired
	stopped bool
	keep    bool
}

func (f *fakeSpeaker) Apply(_ context.Context, d bgp.Desired) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, d)
	return nil
}

func (f *fakeSpeaker) Status(context.Context) (bgp.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := bgp.Status{RouterID: f.cfg.RouterID, ASN: f.cfg.ASN, GracefulRestart: f.cfg.GracefulRestart}
	if len(f.applied) > 0 {
		d := f.applied[len(f.applied)-1]
		st.Announced = d.Prefixes
		for _, p := range d.Peers {
			st.Peers = append(st.Peers, bgp.PeerStatus{Address: p.Address, ASN: p.ASN, State: "established",
				Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), PrefixesSent: uint64(len(d.Prefixes))})
		}
	}
	return st, nil
}

func (f *fakeSpeaker) Stop(_ context.Context, keep bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped, f.keep = true, keep
	return nil
}

func (f *fakeSpeaker) last() (bgp.Desired, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.applied) == 0 {
		return bgp.Desired{}, false
	}
	return f.applied[len(f.applied)-1], true
}

// fakeSpeakers hands out fakes and keeps them, newest last.
type fakeSpeakers struct {
	mu  sync.Mutex
	all []*fakeSpeaker
}

func (fs *fakeSpeakers) start(_ context.Context, cfg bgp.Config) (BGPSpeaker, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f := &fakeSpeaker{cfg: cfg}
	fs.all = append(fs.all, f)
	return f, nil
}

func (fs *fakeSpeakers) list() []*fakeSpeaker {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return slices.Clone(fs.all)
}

func (fs *fakeSpeakers) current() *fakeSpeaker {
	all := fs.list()
	if len(all) == 0 {
		return nil
	}
	return all[len(all)-1]
}

// announces waits until the current speaker's last Apply announces want
// (and returns it).
func (fs *fakeSpeakers) waitAnnounces(t *testing.T, what string, want func([]netip.Prefix) bool) bgp.Desired {
	t.Helper()
	var d bgp.Desired
	waitFor(t, what, func() bool {
		s := fs.current()
		if s == nil {
			return false
		}
		var ok bool
		d, ok = s.last()
		return ok && want(d.Prefixes)
	})
	return d
}

func (e *env) hostBlocks(network, host string) []netip.Prefix {
	e.t.Helper()
	b, err := e.admin.Blocks(context.Background(), network)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []netip.Prefix
	for _, bi := range b[network] {
		if bi.Host == host {
			out = append(out, bi.Prefix)
		}
	}
	return out
}

// TestAgentBGPAnnouncesBlocks: a host of an advertise-blocks group starts
// a speaker with the topology's AS, restart time and peers, its address as
// router ID, and announces the cover of its blocks: a new block is
// announced, a released one withdrawn. Its status reaches the server. The
// agent's exit stops the speaker with a Cease.
func TestAgentBGPAnnouncesBlocks(t *testing.T) {
	e := newEnv(t, bgpTopology)
	fs := &fakeSpeakers{}
	e.bgp = func(string) BGPOptions { return BGPOptions{Start: fs.start} }
	n := e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()

	first := e.hostBlocks("pods", "n1")
	d := fs.waitAnnounces(t, "the first block announced", func(ps []netip.Prefix) bool { return slices.Equal(ps, first) })
	s := fs.current()
	if s.cfg.RouterID != netip.MustParseAddr("192.168.10.11") || s.cfg.ASN != 64601 || s.cfg.GracefulRestart != 90*time.Second {
		t.Errorf("speaker config %+v: want router ID 192.168.10.11, AS 64601, graceful restart 90s", s.cfg)
	}
	wantPeers := []bgp.Peer{{Address: netip.MustParseAddr("192.168.1.1"), ASN: 65001, Port: 179},
		{Address: netip.MustParseAddr("192.168.1.2"), ASN: 65001, Port: 179, Password: "s3cret"}}
	if !slices.Equal(d.Peers, wantPeers) {
		t.Errorf("peers %+v, want the topology's %+v", d.Peers, wantPeers)
	}

	// Fill past the first block: the block claimed ahead is announced
	// (merged with the first when they are adjacent).
	for i := range 14 {
		if _, err := n.Add(ctx, addReq(fmt.Sprintf("p%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "two blocks", func() bool { return len(e.hostBlocks("pods", "n1")) == 2 })
	two := netx.Cover(e.hostBlocks("pods", "n1")...)
	fs.waitAnnounces(t, "both blocks announced", func(ps []netip.Prefix) bool { return slices.Equal(ps, two) })

	// Delete every pod: the surplus block is released and withdrawn.
	for i := range 14 {
		if err := n.Del(ctx, cniapi.Attachment{ContainerID: fmt.Sprintf("p%d", i), IfName: "eth0"}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "back to one block", func() bool { return len(e.hostBlocks("pods", "n1")) == 1 })
	one := e.hostBlocks("pods", "n1")
	fs.waitAnnounces(t, "the released block withdrawn", func(ps []netip.Prefix) bool { return slices.Equal(ps, one) })
	if got := len(fs.list()); got != 1 {
		t.Errorf("%d speakers started; the configuration never changed, want 1", got)
	}

	// The server keeps the status for ctl.
	waitFor(t, "status at the server", func() bool {
		r, err := e.admin.BGP(ctx)
		if err != nil || len(r.Hosts) != 1 || !r.Hosts[0].Reported {
			return false
		}
		st := r.Hosts[0].Status
		return r.Hosts[0].Host == "n1" && r.Hosts[0].Groups["pods"] == "fabric/rack-1" && st.ASN == 64601 &&
			slices.Equal(st.Announced, one) && len(st.Peers) == 2 && st.Peers[0].State == "established" && st.GracefulRestartSeconds == 90
	})

	n.stop()
	if !s.stopped || s.keep {
		t.Errorf("after the agent's exit: speaker stopped %v, keeping routes %v; want stopped with a Cease", s.stopped, s.keep)
	}
	r, err := e.admin.BGP(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := r.Hosts[0].Status; len(st.Peers) != 0 || len(st.Announced) != 0 || st.Error != "the agent stopped" {
		t.Errorf("status after exit %+v: want no peers, nothing announced, \"the agent stopped\"", st)
	}
}

// TestAgentBGPGroupAndOverrides: a host of an advertise-group group
// announces its group's prefixes; --bgp-peer and --bgp-asn replace the
// topology's peers and AS; KeepRoutesOnExit stops without a Cease; a
// topology where the group no longer routes by bgp stops the speaker.
func TestAgentBGPGroupAndOverrides(t *testing.T) {
	e := newEnv(t, bgpTopology)
	fs := &fakeSpeakers{}
	tor := topology.BGPPeer{Address: netip.MustParseAddr("10.0.0.1"), ASN: 65100, Port: 1179}
	e.bgp = func(string) BGPOptions {
		return BGPOptions{Start: fs.start, Peers: []topology.BGPPeer{tor}, ASN: 4200000001, KeepRoutesOnExit: true}
	}
	n := e.startNode("n2", "192.168.20.11", "")
	// startNode registers with rack=1; move the host to rack 2.
	if _, err := e.admin.RegisterHost(context.Background(), "n2", clientHost("192.168.20.11", "2")); err != nil {
		t.Fatal(err)
	}
	snap, err := e.admin.Snapshot(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	group := snap.Groups["pods"]["fabric/rack-2"]
	d := fs.waitAnnounces(t, "the group's prefixes announced", func(ps []netip.Prefix) bool {
		return len(group) > 0 && slices.Equal(ps, netx.Cover(group...))
	})
	if !slices.Equal(d.Peers, []bgp.Peer{{Address: tor.Address, ASN: tor.ASN, Port: tor.Port}}) || fs.current().cfg.ASN != 4200000001 {
		t.Errorf("peers %+v AS %d: want the flags' %+v and AS 4200000001", d.Peers, fs.current().cfg.ASN, tor)
	}

	// The fabric becomes l2: no speaker (a Cease to its peers).
	s := fs.current()
	l2 := `networks:
  - {name: pods, cidr: 10.10.0.0/16, blockSize: 28, default: true}
topologies:
  - networks: [pods]
    groups:
      - name: fabric
        routing: l2
        groups:
          - {name: rack-1, assignment: {matchLabels: {rack: "1"}}}
          - {name: rack-2, assignment: {matchLabels: {rack: "2"}}}
`
	if _, err := e.admin.ApplyTopology(context.Background(), topologyRequest(l2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "speaker stopped", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.stopped })
	if s.keep {
		t.Error("the speaker of a group that left bgp kept its routes at the peers; want a Cease")
	}
	// Back to bgp: a new speaker; the agent's exit keeps its routes.
	if _, err := e.admin.ApplyTopology(context.Background(), topologyRequest(bgpTopology)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new speaker", func() bool { return len(fs.list()) == 2 })
	n.stop()
	if s2 := fs.current(); !s2.stopped || !s2.keep {
		t.Errorf("exit with KeepRoutesOnExit: stopped %v keep %v; want stopped keeping routes", s2.stopped, s2.keep)
	}
}

func clientHost(ip, rack string) api.HostRequest {
	return api.HostRequest{IP: netip.MustParseAddr(ip), Labels: map[string]string{"rack": rack}}
}

func topologyRequest(text string) api.TopologyRequest {
	return api.TopologyRequest{Topology: text}
}
