package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// A BGP router with daemon: frr runs FRRouting (what SONiC and Cumulus
// switches run) in place of BIRD: zebra, which owns the namespace's
// kernel routes, and bgpd, which speaks BGP and hands its chosen routes
// to zebra. Both run in the foreground inside the router's namespace, as
// root, with every socket, pid file and configuration file under the
// router's directory, so nothing collides with another router's FRR or a
// system-wide one. The router's sessions are BirdPeers (the same peers
// a BIRD router has), and its policy is BirdConfig's, in FRR's words.

// frrPaths lists a router's FRR files (all under its RouterDir).
type frrPaths struct {
	Dir string // also the vty socket directory (bgpd.vty, zebra.vty)
}

func (n Names) frr(router string) frrPaths { return frrPaths{Dir: n.RouterDir(router)} }

func (p frrPaths) ZebraConf() string { return filepath.Join(p.Dir, "zebra.conf") }
func (p frrPaths) BGPDConf() string  { return filepath.Join(p.Dir, "bgpd.conf") }
func (p frrPaths) ZServ() string     { return filepath.Join(p.Dir, "zserv.api") }
func (p frrPaths) PID(d string) string {
	return filepath.Join(p.Dir, d+".pid")
}

// sockets are the unix sockets FRR binds, each bound by sun_path's 107
// bytes.
func (p frrPaths) sockets() []string {
	return []string{p.ZServ(), filepath.Join(p.Dir, "zebra.vty"), filepath.Join(p.Dir, "bgpd.vty")}
}

// frrDir is where Debian's frr package puts the daemons.
const frrDir = "/usr/lib/frr"

// frrGroup is the group FRR's daemons run as: they refuse to start unless
// their user belongs to the vty group (frrvty), and a daemon's own group
// always counts as one of its user's.
const frrGroup = "frrvty"

// FRR route-map and filter names in FRRConfig.
const (
	frrSegments    = "lab-segments"     // prefix list and route map: the router's segments
	frrAll         = "lab-all"          // accept everything
	frrNone        = "lab-none"         // send nothing
	frrSpineOut    = "lab-spine-out"    // what goes over the spine
	frrFromRouters = "lab-from-routers" // as-path list: learned over the spine
)

// FRRZebraConfig is a router's zebra.conf (pure): zebra needs nothing but
// a name; it installs bgpd's chosen routes in the namespace's main table
// (proto bgp), which the router's lookups reach after RouterTable's rule
// finds nothing there (an FRR router's RouterTable stays empty).
func FRRZebraConfig(router string) string {
	return fmt.Sprintf("! zebra.conf of lab router %s, written by terrane lab up.\nhostname %s\nlog stdout informational\n", router, router)
}

// FRRConfig is a BGP router's bgpd.conf (pure), the same policy as
// BirdConfig's:
//
//   - hosts connect in (passive sessions); everything they announce is
//     accepted and nothing is sent back;
//   - over the spine, the router announces its segments (connected routes
//     matching prefix list lab-segments) and what its own hosts announced,
//     never what it learned over the spine (as-path list lab-from-routers
//     matches a path whose first AS is another router's), with itself as
//     next hop;
//   - several hosts announcing one prefix make one multipath route;
//   - graceful restart: a restarting peer's routes are kept, marked
//     stale, until it returns or its restart time is up; short timers, so
//     a lab converges in seconds.
func FRRConfig(sc *Scenario, router string, peers []BirdPeer) string {
	r, _ := sc.Router(router)
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("! bgpd.conf of lab router %s, written by terrane lab up.", router)
	w("frr defaults datacenter")
	w("hostname %s", router)
	w("log stdout informational")
	w("!")
	w("! The router's segments, announced over the spine (the underlay).")
	seq := 10
	for _, s := range sc.Segments {
		if s.Router == router {
			w("ip prefix-list %s seq %d permit %s", frrSegments, seq, s.Subnet)
			seq += 10
		}
	}
	var others []string
	for _, o := range sc.Routers {
		if o.Name != router && o.BGP != nil && o.BGP.ASN != 0 {
			others = append(others, fmt.Sprint(o.BGP.ASN))
		}
	}
	slices.Sort(others)
	others = slices.Compact(others)
	if len(others) > 0 {
		w("!")
		w("! A path whose first AS is another router's was learned over the spine.")
		w("bgp as-path access-list %s seq 10 permit ^(%s)(_|$)", frrFromRouters, strings.Join(others, "|"))
	}
	w("!")
	w("route-map %s permit 10", frrSegments)
	w(" match ip address prefix-list %s", frrSegments)
	w("exit")
	w("!")
	w("route-map %s permit 10", frrAll)
	w("exit")
	w("!")
	w("route-map %s deny 10", frrNone)
	w("exit")
	w("!")
	if len(others) > 0 {
		w("route-map %s deny 10", frrSpineOut)
		w(" match as-path %s", frrFromRouters)
		w("exit")
	}
	w("route-map %s permit 20", frrSpineOut)
	w("exit")
	w("!")
	w("router bgp %d", r.BGP.ASN)
	w(" bgp router-id %s", r.Spine.Addr())
	w(" no bgp ebgp-requires-policy")
	w(" no bgp default ipv4-unicast")
	w(" bgp graceful-restart")
	w(" bgp bestpath as-path multipath-relax")
	w(" timers bgp 3 9")
	for _, p := range peers {
		w(" neighbor %s remote-as %d", p.Addr, p.ASN)
		if p.Kind == "host" {
			w(" neighbor %s description host %s", p.Addr, p.Node)
			w(" neighbor %s passive", p.Addr)
		} else {
			w(" neighbor %s description router %s (spine)", p.Addr, p.Node)
		}
		w(" neighbor %s update-source %s", p.Addr, p.Local)
		w(" neighbor %s timers connect 2", p.Addr)
		if p.Password != "" {
			w(" neighbor %s password %s", p.Addr, p.Password)
		}
	}
	w(" !")
	w(" address-family ipv4 unicast")
	w("  redistribute connected route-map %s", frrSegments)
	w("  maximum-paths 64")
	for _, p := range peers {
		w("  neighbor %s activate", p.Addr)
		w("  neighbor %s route-map %s in", p.Addr, frrAll)
		if p.Kind == "host" {
			w("  neighbor %s route-map %s out", p.Addr, frrNone)
		} else {
			w("  neighbor %s route-map %s out", p.Addr, frrSpineOut)
			w("  neighbor %s next-hop-self", p.Addr)
		}
	}
	w(" exit-address-family")
	w("exit")
	return b.String()
}

// launchFRR writes a BGP router's zebra.conf and bgpd.conf and runs zebra,
// then bgpd, inside the router's namespace.
func launchFRR(ctx context.Context, st *State, router string, peers []BirdPeer) (*daemon, error) {
	n := st.names()
	p := n.frr(router)
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.ZebraConf(), []byte(FRRZebraConfig(router)), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.BGPDConf(), []byte(FRRConfig(st.Scenario, router, peers)), 0o600); err != nil {
		return nil, err
	}
	common := func(d, conf string) []string {
		return []string{filepath.Join(frrDir, d), "-f", conf, "--vty_socket", p.Dir, "-z", p.ZServ(),
			"-i", p.PID(d), "-u", "root", "-g", frrGroup, "--log", "stdout"}
	}
	z, err := startDaemon(st, "zebra", router, n.Node(router), common("zebra", p.ZebraConf()))
	if err != nil {
		return nil, err
	}
	// bgpd connects to zebra's socket once, at start: wait for it.
	if err := waitFor(ctx, z, 10*time.Second, "zebra "+router, func(ctx context.Context) error {
		_, err := vtysh(ctx, p.Dir, "zebra", "show version")
		return err
	}); err != nil {
		return nil, err
	}
	return startDaemon(st, "bgpd", router, n.Node(router), common("bgpd", p.BGPDConf()))
}

// vtysh runs one command against one FRR daemon's vty socket in dir.
func vtysh(ctx context.Context, dir, daemon, command string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "vtysh", "--vty_socket", dir, "-d", daemon, "-c", command)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("vtysh --vty_socket %s -d %s -c %q: %v: %s", dir, daemon, command, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// CheckFRR reports whether FRR is installed (a router with daemon: frr
// needs it).
func CheckFRR() error {
	for _, p := range []string{filepath.Join(frrDir, "zebra"), filepath.Join(frrDir, "bgpd")} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("the scenario's routers run FRR and need it (%s not found): apt-get install frr (scripts/lab.sh installs it)", p)
		}
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		return fmt.Errorf("the scenario's routers run FRR and need vtysh (not found): apt-get install frr")
	}
	if _, err := user.LookupGroup(frrGroup); err != nil {
		return fmt.Errorf("the scenario's routers run FRR as group %s, which this machine lacks (%v): Debian's frr package creates it (apt-get install frr)", frrGroup, err)
	}
	return nil
}

// RunsFRR reports whether a BGP router runs FRR (otherwise BIRD).
func (b *RouterBGP) RunsFRR() bool { return b != nil && b.Daemon == DaemonFRR }

// checkRouterDaemons checks that the daemons the scenario's BGP routers
// run are installed, and that their sockets fit a unix socket path.
func checkRouterDaemons(sc *Scenario, n Names) error {
	var bird, frr bool
	for _, r := range sc.Routers {
		if r.BGP == nil {
			continue
		}
		socks := []string{n.BirdCtl(r.Name)}
		if r.BGP.RunsFRR() {
			frr, socks = true, n.frr(r.Name).sockets()
		} else {
			bird = true
		}
		for _, s := range socks {
			if len(s) > 107 {
				return fmt.Errorf("lab directory %s is too long: router %s's socket %s exceeds the 107 bytes of a unix socket path; pick a shorter --dir", n.Dir, r.Name, s)
			}
		}
	}
	if bird {
		if err := CheckBird(); err != nil {
			return err
		}
	}
	if frr {
		return CheckFRR()
	}
	return nil
}

// routerDaemons says which daemon each BGP router runs, for a progress
// line: "BIRD on tor-1, vpc; FRR on tor-2".
func routerDaemons(sc *Scenario) string {
	var bird, frr []string
	for _, r := range sc.Routers {
		switch {
		case r.BGP.RunsFRR():
			frr = append(frr, r.Name)
		case r.BGP != nil:
			bird = append(bird, r.Name)
		}
	}
	var parts []string
	if len(bird) > 0 {
		parts = append(parts, "BIRD on "+strings.Join(bird, ", "))
	}
	if len(frr) > 0 {
		parts = append(parts, "FRR on "+strings.Join(frr, ", "))
	}
	return strings.Join(parts, "; ")
}
