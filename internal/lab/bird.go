package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/terrane-net/terrane/internal/topology"
)

// BIRD's protocol names are symbols (letters, digits, '_'): a peer's is
// its kind's prefix and its node name with '-' as '_' (node names hold no
// '_', so the mapping is one to one).
const (
	birdHostPrefix   = "h_"
	birdRouterPrefix = "r_"
)

// BirdPeer is one BGP session of a lab router.
type BirdPeer struct {
	// Password is the TCP MD5 key ("" for none).
	Password string `json:"-"`
	// Protocol is the session's protocol name in BIRD.
	Protocol string `json:"protocol"`
	// Kind is "host" (a host of the router's segments; it connects in) or
	// "router" (another router, over the spine).
	Kind string `json:"kind"`
	Node string `json:"node"`
	// Local is the router's address on the shared link, Addr the peer's.
	Local netip.Addr `json:"local"`
	Addr  netip.Addr `json:"addr"`
	ASN   uint32     `json:"asn"`
}

func birdProtocol(prefix, node string) string {
	return prefix + strings.ReplaceAll(node, "-", "_")
}

// BirdPeers lists a BGP router's sessions (pure): one per host of its
// segments that speaks BGP (hostASN holds those hosts' ASNs; a host not in
// it routes otherwise and is not a peer), then one per other BGP router
// over the spine. Sorted hosts first, each kind by name.
func BirdPeers(sc *Scenario, router string, speakers map[string]hostSpeaker) []BirdPeer {
	r, ok := sc.Router(router)
	if !ok || r.BGP == nil {
		return nil
	}
	var hosts, routers []BirdPeer
	for _, h := range sc.Hosts {
		seg, _ := sc.Segment(h.Segment)
		sp, speaks := speakers[h.Name]
		if seg.Router != router || !speaks {
			continue
		}
		hosts = append(hosts, BirdPeer{Protocol: birdProtocol(birdHostPrefix, h.Name), Kind: "host", Node: h.Name,
			Local: seg.Gateway, Addr: h.IP, ASN: sp.ASN, Password: sp.Password})
	}
	for _, o := range sc.Routers {
		if o.Name == router || o.BGP == nil {
			continue
		}
		routers = append(routers, BirdPeer{Protocol: birdProtocol(birdRouterPrefix, o.Name), Kind: "router", Node: o.Name,
			Local: r.Spine.Addr(), Addr: o.Spine.Addr(), ASN: o.BGP.ASN})
	}
	byNode := func(a, b BirdPeer) int { return strings.Compare(a.Node, b.Node) }
	slices.SortFunc(hosts, byNode)
	slices.SortFunc(routers, byNode)
	return append(hosts, routers...)
}

// BirdConfig is a BGP router's bird.conf (pure). The router
//
//   - learns its hosts' announcements (passive sessions: hosts connect in;
//     nothing is sent back, hosts reach everything through their default
//     route);
//   - announces, to every other router over the spine, its segments
//     (protocol direct) and what its own hosts announced — never what it
//     learned over the spine, so each prefix has one path per origin;
//   - installs every BGP route in RouterTable (protocol kernel, ECMP when
//     several hosts announce one prefix), where the router's rule looks;
//   - keeps a restarting peer's routes (graceful restart) and uses short
//     timers: a lab converges in seconds, not minutes.
//
// A VPC router beside BGP routers is the VPC's gateway: it has no host
// sessions, announces its segments and the VPC route table (learned from
// kernel table RouterTable, where vpcd mirrors it; protocol vpc_table)
// over the spine, and installs what the ToRs announce in main, which its
// rule consults after the VPC table.
func BirdConfig(sc *Scenario, router string, peers []BirdPeer) string {
	r, _ := sc.Router(router)
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# bird.conf of lab router %s, written by terrane lab up.", router)
	w("log stderr all;")
	w("router id %s;", r.Spine.Addr())
	w("")
	w("protocol device {")
	w("  scan time 10;")
	w("}")
	w("")
	w("# The router's segments, announced over the spine (the underlay).")
	w("protocol direct segments {")
	w("  ipv4;")
	w("  interface %q;", routerSegIf("*"))
	w("}")
	w("")
	spineExport := fmt.Sprintf("source = RTS_DEVICE || (source = RTS_BGP && proto ~ %q)", birdHostPrefix+"*")
	if r.VPC != nil {
		// The VPC's gateway: table RouterTable is the VPC route table
		// (vpcd's); BIRD learns it and announces it, and puts what it
		// learns from the ToRs in main, consulted after it.
		w("# The VPC route table: vpcd mirrors the fake EC2's table into kernel")
		w("# table %d; BIRD learns those routes and announces them to the ToRs.", RouterTable)
		w("ipv4 table vpc4;")
		w("protocol kernel vpc_table {")
		w("  kernel table %d;", RouterTable)
		w("  learn;")
		w("  scan time 2;")
		w("  ipv4 { table vpc4; import all; export none; };")
		w("}")
		w("protocol pipe vpc_pipe {")
		w("  table vpc4;")
		w("  peer table master4;")
		w("  import none;")
		w("  export all;")
		w("}")
		w("")
		w("# Every BGP route into main, consulted after the VPC table (rule %d).", RouterRulePref)
		w("protocol kernel fabric {")
		w("  merge paths on;")
		w("  ipv4 { import none; export where source = RTS_BGP; };")
		w("}")
		w("")
		spineExport = "source = RTS_DEVICE || source = RTS_INHERIT"
	} else {
		w("# Every BGP route into table %d, which rule %d consults before main.", RouterTable, RouterRulePref)
		w("protocol kernel fabric {")
		w("  kernel table %d;", RouterTable)
		w("  merge paths on;")
		w("  ipv4 { import none; export where source = RTS_BGP; };")
		w("}")
		w("")
	}
	w("template bgp lab_peer {")
	w("  local as %d;", r.BGP.ASN)
	w("  graceful restart on;")
	w("  connect delay time 1;")
	w("  connect retry time 2;")
	w("  error wait time 1, 5;")
	w("  hold time 9;")
	w("  keepalive time 3;")
	w("}")
	for _, p := range peers {
		w("")
		switch p.Kind {
		case "host":
			w("protocol bgp %s from lab_peer {", p.Protocol)
			w("  description \"host %s\";", p.Node)
			w("  local %s as %d;", p.Local, r.BGP.ASN)
			w("  neighbor %s as %d;", p.Addr, p.ASN)
			w("  passive on;")
			if p.Password != "" {
				w("  password %q;", p.Password)
			}
			w("  ipv4 { import all; export none; };")
		default:
			w("protocol bgp %s from lab_peer {", p.Protocol)
			w("  description \"router %s (spine)\";", p.Node)
			w("  local %s as %d;", p.Local, r.BGP.ASN)
			w("  neighbor %s as %d;", p.Addr, p.ASN)
			w("  ipv4 {")
			w("    import all;")
			w("    export where %s;", spineExport)
			w("    next hop self;")
			w("  };")
		}
		w("}")
	}
	return b.String()
}

// launchBird writes a BGP router's bird.conf and runs BIRD inside the
// router's namespace in the foreground (-f: the pid is BIRD's), logging to
// DIR/logs/bird-<router>.log.
func launchBird(st *State, router string, peers []BirdPeer) (*daemon, error) {
	n := st.names()
	if err := os.MkdirAll(n.RouterDir(router), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(n.BirdConf(router), []byte(BirdConfig(st.Scenario, router, peers)), 0o600); err != nil {
		return nil, err
	}
	return startDaemon(st, "bird", router, n.Node(router), []string{"bird",
		"-c", n.BirdConf(router), "-s", n.BirdCtl(router), "-P", n.BirdPID(router), "-f"})
}

// startRouterDaemons starts each BGP router's daemon (BIRD, or FRR's
// zebra and bgpd) and returns when each answers on its control socket;
// speakers are the hosts that peer with them.
func startRouterDaemons(ctx context.Context, st *State, speakers map[string]hostSpeaker) error {
	var ds []*daemon
	for _, r := range st.Scenario.Routers {
		if r.BGP == nil {
			continue
		}
		launch := func() (*daemon, error) { return launchBird(st, r.Name, BirdPeers(st.Scenario, r.Name, speakers)) }
		if r.BGP.RunsFRR() {
			launch = func() (*daemon, error) { return launchFRR(ctx, st, r.Name, BirdPeers(st.Scenario, r.Name, speakers)) }
		}
		d, err := launch()
		if err != nil {
			return err
		}
		ds = append(ds, d)
	}
	errs := make([]error, len(ds))
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Go(func() {
			r, _ := st.Scenario.Router(d.Node)
			errs[i] = waitFor(ctx, d, 10*time.Second, d.Role+" "+d.Node, func(ctx context.Context) error {
				if r.BGP.RunsFRR() {
					_, err := vtysh(ctx, st.names().frr(d.Node).Dir, "bgpd", "show bgp summary json")
					return err
				}
				_, err := birdc(ctx, st.names().BirdCtl(d.Node), "show", "status")
				return err
			})
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// CheckBird reports whether BIRD 2 is installed (a BGP scenario needs it).
func CheckBird() error {
	for _, p := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("the scenario's routers run BGP and need BIRD 2 (%s not found): apt-get install bird2 (scripts/lab.sh installs it)", p)
		}
	}
	return nil
}

// hostSpeaker is how a host behind a BGP router speaks BGP to it, read
// from the host's leaf groups.
type hostSpeaker struct {
	ASN uint32
	// Password is the TCP MD5 key of the group's peer entry for the
	// router ("" for none).
	Password string
}

// hostSpeakers lists the hosts behind BGP routers whose leaf groups route
// by bgp, with what their routers need to peer with them. A host in
// several networks takes its first network's settings (CheckTopology
// makes them agree).
func hostSpeakers(sc *Scenario, t *topology.Topology) map[string]hostSpeaker {
	out := map[string]hostSpeaker{}
	for _, h := range sc.Hosts {
		r, ok := sc.RouterOf(h.Name)
		if !ok || r.BGP == nil {
			continue
		}
		seg, _ := sc.Segment(h.Segment)
		for _, n := range t.Networks {
			g := leafOf(n.Tree, h)
			if g == nil || g.Mode != topology.ModeBGP || g.BGP == nil {
				continue
			}
			if _, done := out[h.Name]; done {
				continue
			}
			hs := hostSpeaker{ASN: g.BGP.ASN}
			for _, p := range g.BGP.Peers {
				if p.Address == seg.Gateway {
					hs.Password = p.Password
				}
			}
			out[h.Name] = hs
		}
	}
	return out
}

// checkBGPTopology cross-checks BGP routers with the topology: each host
// behind one routes by bgp in every network, its group names the router
// as a peer with the router's ASN, and its own ASN is one no router uses
// (eBGP to its router; a router seeing its own ASN in a path drops it).
func (sc *Scenario) checkBGPTopology(t *topology.Topology, add func(path, format string, args ...any)) {
	routerASN := map[uint32]string{}
	for _, r := range sc.Routers {
		if r.BGP != nil {
			routerASN[r.BGP.ASN] = r.Name
		}
	}
	for i, h := range sc.Hosts {
		r, ok := sc.RouterOf(h.Name)
		if !ok || r.BGP == nil || r.VPC != nil {
			continue // a VPC gateway's hosts route by vpc: checkVPCTopology
		}
		seg, _ := sc.Segment(h.Segment)
		p := fmt.Sprintf("hosts[%d]", i)
		var asn uint32
		for _, n := range t.Networks {
			g := leafOf(n.Tree, h)
			if g == nil {
				continue // reported by CheckTopology
			}
			if g.Mode != topology.ModeBGP || g.BGP == nil {
				add(p+".labels", "host %q sits behind BGP router %s, but its group %s of network %q routes by %s; set routing: bgp on the group (or drop bgp from the routers)",
					h.Name, r.Name, g.Path, n.Name, g.Mode)
				continue
			}
			want := fmt.Sprintf("{address: %s, asn: %d}", seg.Gateway, r.BGP.ASN)
			i := slices.IndexFunc(g.BGP.Peers, func(bp topology.BGPPeer) bool { return bp.Address == seg.Gateway })
			switch {
			case i < 0:
				add(p, "host %q's group %s (network %q) does not name its router %s as a BGP peer; add %s to the group's bgp.peers",
					h.Name, g.Path, n.Name, r.Name, want)
			case g.BGP.Peers[i].ASN != r.BGP.ASN:
				add(p, "host %q's group %s (network %q) peers with %s as AS %d, but router %s is AS %d; write %s",
					h.Name, g.Path, n.Name, seg.Gateway, g.BGP.Peers[i].ASN, r.Name, r.BGP.ASN, want)
			case g.BGP.Peers[i].Port != topology.DefaultBGPPort:
				add(p, "host %q's group %s (network %q) peers with %s on port %d; the lab's BIRD listens on %d",
					h.Name, g.Path, n.Name, seg.Gateway, g.BGP.Peers[i].Port, topology.DefaultBGPPort)
			}
			if other, clash := routerASN[g.BGP.ASN]; clash {
				add(p, "host %q's group %s (network %q) uses AS %d, which is router %s's; give the hosts their own ASN (bgp.asn on the group)",
					h.Name, g.Path, n.Name, g.BGP.ASN, other)
			}
			if asn != 0 && asn != g.BGP.ASN {
				add(p, "host %q speaks BGP as AS %d in one network and AS %d in network %q; a host has one speaker: give its groups one ASN",
					h.Name, asn, g.BGP.ASN, n.Name)
			}
			asn = g.BGP.ASN
		}
	}
}
