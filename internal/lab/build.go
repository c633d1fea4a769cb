package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/terrane-net/terrane/internal/dataplane"
	"github.com/terrane-net/terrane/internal/dataplane/linux"
)

// Interface names. Inside a host: eth0; inside a router: s-<segment> per
// segment and spine; in the fabric namespace: one bridge per segment (br<i>),
// the spine bridge, and the outer ends of every veth (h<i> for hosts,
// r<k>s<i> and r<k> for routers). Indices keep them within 15 characters.
const (
	hostUplink  = "eth0"
	spineIf     = "spine"
	spineBridge = "spine"
)

func segmentBridge(i int) string        { return fmt.Sprintf("br%d", i) }
func hostPort(i int) string             { return fmt.Sprintf("h%d", i) }
func routerSegPort(k, i int) string     { return fmt.Sprintf("r%ds%d", k, i) }
func routerSpinePort(k int) string      { return fmt.Sprintf("r%d", k) }
func routerSegIf(segment string) string { return "s-" + segment }
func segmentIndex(sc *Scenario, name string) int {
	for i, s := range sc.Segments {
		if s.Name == name {
			return i
		}
	}
	return -1
}

// ipBatch runs `ip [-n NS] -batch -` over the given commands: one process
// for a whole namespace's set-up.
func ipBatch(ctx context.Context, netns string, cmds []string) error {
	if len(cmds) == 0 {
		return nil
	}
	args := []string{"-batch", "-"}
	if netns != "" {
		args = append([]string{"-n", netns}, args...)
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdin = strings.NewReader(strings.Join(cmds, "\n") + "\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		where := "root namespace"
		if netns != "" {
			where = netns
		}
		return fmt.Errorf("ip -batch in %s: %v: %s", where, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// setSysctls writes net sysctls (paths under /proc/sys/net/) inside a
// namespace: /proc/sys/net shows the namespace of the thread that opens it.
func setSysctls(netns string, kv [][2]string) error {
	return ns.WithNetNSPath(NetnsPath(netns), func(ns.NetNS) error {
		var errs []error
		for _, e := range kv {
			p := filepath.Join("/proc/sys/net", strings.ReplaceAll(e[0], ".", "/"))
			if err := os.WriteFile(p, []byte(e[1]), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("sysctl net.%s in %s: %w", e[0], netns, err))
			}
		}
		return errors.Join(errs...)
	})
}

// routerSysctls make a namespace a plain router: it forwards, does not
// drop asymmetric traffic, and sends no redirects (a rack's hosts forward
// for each other; redirects would only confuse the picture).
var routerSysctls = [][2]string{
	{"ipv4.ip_forward", "1"},
	{"ipv4.conf.all.rp_filter", "0"},
	{"ipv4.conf.default.rp_filter", "0"},
	{"ipv4.conf.all.send_redirects", "0"},
	{"ipv4.conf.default.send_redirects", "0"},
}

// buildInfrastructure makes the namespaces, bridges, links and addresses
// of a scenario, and the routers' underlay routes. st records each
// namespace before it is made, so Down finds it whatever fails.
func buildInfrastructure(ctx context.Context, st *State, progress func(string, ...any)) error {
	sc, n := st.Scenario, st.names()
	nodes := []string{n.Fabric()}
	for _, r := range sc.Routers {
		nodes = append(nodes, n.Node(r.Name))
	}
	for _, h := range sc.Hosts {
		nodes = append(nodes, n.Node(h.Name))
	}
	st.Netns = append(st.Netns, nodes...)
	if err := st.Save(); err != nil {
		return err
	}
	progress("creating %d namespaces (fabric, %d routers, %d hosts)", len(nodes), len(sc.Routers), len(sc.Hosts))
	var cmds []string
	for _, ns := range nodes {
		cmds = append(cmds, "netns add "+ns)
	}
	if err := ipBatch(ctx, "", cmds); err != nil {
		return err
	}
	for _, r := range sc.Routers {
		if err := setSysctls(n.Node(r.Name), routerSysctls); err != nil {
			return err
		}
	}

	spine := slices.ContainsFunc(sc.Routers, func(r Router) bool { return r.Spine.IsValid() })
	progress("wiring %d segments%s", len(sc.Segments), map[bool]string{true: " and the spine", false: ""}[spine])
	fab := []string{"link set lo up"}
	for i := range sc.Segments {
		fab = append(fab, "link add "+segmentBridge(i)+" type bridge", "link set "+segmentBridge(i)+" up")
	}
	if spine {
		fab = append(fab, "link add "+spineBridge+" type bridge", "link set "+spineBridge+" up")
	}
	for i, h := range sc.Hosts {
		fab = append(fab, hostWireCmds(sc, n, i, h)...)
	}
	for k, r := range sc.Routers {
		for i, s := range sc.Segments {
			if s.Router != r.Name {
				continue
			}
			port := routerSegPort(k, i)
			fab = append(fab,
				fmt.Sprintf("link add %s type veth peer name %s netns %s", port, routerSegIf(s.Name), n.Node(r.Name)),
				fmt.Sprintf("link set %s master %s up", port, segmentBridge(i)))
		}
		if r.Spine.IsValid() {
			fab = append(fab,
				fmt.Sprintf("link add %s type veth peer name %s netns %s", routerSpinePort(k), spineIf, n.Node(r.Name)),
				fmt.Sprintf("link set %s master %s up", routerSpinePort(k), spineBridge))
		}
	}
	if err := ipBatch(ctx, n.Fabric(), fab); err != nil {
		return err
	}
	routerNS := map[string]bool{}
	for _, r := range sc.Routers {
		routerNS[n.Node(r.Name)] = true
	}
	if err := linksAsWire(n.Fabric(), routerNS, fab); err != nil {
		return err
	}

	progress("addressing routers and hosts")
	for _, r := range sc.Routers {
		cmds := []string{"link set lo up"}
		var sys [][2]string
		for _, s := range sc.Segments {
			if s.Router != r.Name {
				continue
			}
			ifn := routerSegIf(s.Name)
			cmds = append(cmds,
				fmt.Sprintf("addr add %s/%d dev %s", s.Gateway, s.Subnet.Bits(), ifn),
				"link set "+ifn+" up")
			sys = append(sys, [2]string{"ipv4.conf." + ifn + ".rp_filter", "0"}, [2]string{"ipv4.conf." + ifn + ".send_redirects", "0"})
		}
		if r.Spine.IsValid() {
			cmds = append(cmds, fmt.Sprintf("addr add %s dev %s", r.Spine, spineIf), "link set "+spineIf+" up")
			sys = append(sys, [2]string{"ipv4.conf." + spineIf + ".rp_filter", "0"}, [2]string{"ipv4.conf." + spineIf + ".send_redirects", "0"})
		}
		cmds = append(cmds, fmt.Sprintf("rule add pref %d lookup %d", RouterRulePref, RouterTable))
		if err := ipBatch(ctx, n.Node(r.Name), cmds); err != nil {
			return err
		}
		if err := setSysctls(n.Node(r.Name), sys); err != nil {
			return err
		}
	}
	for _, h := range sc.Hosts {
		if err := ipBatch(ctx, n.Node(h.Name), hostAddrCmds(sc, h)); err != nil {
			return err
		}
	}
	if sc.StaticRouters() {
		progress("programming the routers' underlay routes")
		if _, err := applyRoutes(ctx, st, RouterRoutes(sc, nil, FabricState{}), nil); err != nil {
			return err
		}
	}
	return nil
}

// hostWireCmds are the fabric namespace's commands that wire host h (the
// i-th) into its segment: a veth whose far end is the host's uplink.
func hostWireCmds(sc *Scenario, n Names, i int, h Host) []string {
	port := hostPort(i)
	return []string{
		fmt.Sprintf("link add %s type veth peer name %s netns %s", port, hostUplink, n.Node(h.Name)),
		fmt.Sprintf("link set %s master %s up", port, segmentBridge(segmentIndex(sc, h.Segment))),
	}
}

// hostAddrCmds are the host namespace's commands that address its uplink
// and route to its segment's router.
func hostAddrCmds(sc *Scenario, h Host) []string {
	seg, _ := sc.Segment(h.Segment)
	cmds := []string{
		"link set lo up",
		fmt.Sprintf("addr add %s/%d dev %s", h.IP, seg.Subnet.Bits(), hostUplink),
		"link set " + hostUplink + " up",
	}
	if h.IP6.IsValid() {
		// No duplicate address detection: the lab assigns distinct
		// addresses, and a tentative address would hold the agent's
		// start.
		cmds = append(cmds, fmt.Sprintf("addr add %s/%d dev %s nodad", h.IP6, seg.Subnet6.Bits(), hostUplink))
	}
	if seg.Router != "" {
		cmds = append(cmds, fmt.Sprintf("route add default via %s dev %s", seg.Gateway, hostUplink))
	}
	return cmds
}

// routerPlanes opens one netlink dataplane per static router, on
// RouterTable (BIRD programs a BGP router's).
type routerPlanes map[string]*linux.Dataplane

func openRouterPlanes(st *State) (routerPlanes, error) {
	out := routerPlanes{}
	for _, r := range st.Scenario.Routers {
		if r.BGP != nil || r.VPC != nil {
			continue
		}
		dp, err := linux.New(linux.Options{Table: RouterTable, NetNSPath: NetnsPath(st.names().Node(r.Name))})
		if err != nil {
			out.Close()
			return nil, fmt.Errorf("router %s: %w", r.Name, err)
		}
		out[r.Name] = dp
	}
	return out, nil
}

func (p routerPlanes) Close() {
	for _, dp := range p {
		dp.Close()
	}
}

// applyRoutes converges every router on want (from RouterRoutes); only
// the difference is written. planes may be nil (opened and closed here).
func applyRoutes(ctx context.Context, st *State, want map[string][]dataplane.Route, planes routerPlanes) (map[string]dataplane.Diff, error) {
	if planes == nil {
		var err error
		if planes, err = openRouterPlanes(st); err != nil {
			return nil, err
		}
		defer planes.Close()
	}
	diffs := map[string]dataplane.Diff{}
	var errs []error
	for _, r := range st.Scenario.Routers {
		if r.BGP != nil || r.VPC != nil {
			continue
		}
		d, err := planes[r.Name].Apply(ctx, dataplane.State{Table: RouterTable, Routes: want[r.Name]})
		diffs[r.Name] = d
		if err != nil {
			errs = append(errs, fmt.Errorf("router %s: %w", r.Name, err))
		}
	}
	return diffs, errors.Join(errs...)
}

// linksAsWire lets every link the fabric's commands made carry GSO packets
// of any size: the fabric's bridges and ports, and the routers' ends (the
// "peer name X netns R" of a veth whose R is in routers; a host's end is
// its uplink, which the agent's --big-tcp decides). A veth hands a GSO
// packet over whole, so these links stand in for wires and switches, where
// a NIC would have cut the packet into frames and the far NIC merged them
// again; a link left at the kernel's 64 KiB would instead cut up the
// larger packets of hosts and pods running BIG TCP, in software.
func linksAsWire(fabric string, routers map[string]bool, cmds []string) error {
	for _, c := range cmds {
		f := strings.Fields(c)
		if len(f) < 3 || f[0] != "link" || f[1] != "add" {
			continue
		}
		if _, err := linux.SetGSOMaxSize(NetnsPath(fabric), f[2], linux.MaxGSOSize); err != nil {
			return fmt.Errorf("fabric: %w", err)
		}
		for i := 3; i+4 < len(f); i++ {
			if f[i] == "peer" && f[i+1] == "name" && f[i+3] == "netns" && routers[f[i+4]] {
				if _, err := linux.SetGSOMaxSize(NetnsPath(f[i+4]), f[i+2], linux.MaxGSOSize); err != nil {
					return fmt.Errorf("router %s: %w", f[i+4], err)
				}
			}
		}
	}
	return nil
}
