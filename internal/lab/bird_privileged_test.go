package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func requireBird(t testing.TB) {
	t.Helper()
	requireRoot(t)
	if err := CheckBird(); err != nil {
		t.Skipf("privileged BGP test: %v", err)
	}
}

// bgpRacks is two racks behind BGP routers, one host each: what the BIRD
// plumbing needs, without agents.
const bgpRacks = `
topology: |
  apiVersion: terrane.io/v1
  kind: Topology
  networks:
    - {name: racks, cidr: 10.20.0.0/16, blockSize: 28, default: true}
  topologies:
    - networks: [racks]
      groups:
        - name: rack-1
          assignment: {matchLabels: {rack: "1"}}
          routing: bgp
          bgp: {asn: 64601, peers: [{address: 192.168.1.1, asn: 65001}]}
        - name: rack-2
          assignment: {matchLabels: {rack: "2"}}
          routing: bgp
          bgp: {asn: 64602, peers: [{address: 192.168.2.1, asn: 65002}]}
segments:
  - {name: rack-1, subnet: 192.168.1.0/24, router: tor-1}
  - {name: rack-2, subnet: 192.168.2.0/24, router: tor-2}
routers:
  - {name: tor-1, spine: 172.31.255.1/24, bgp: {asn: 65001}}
  - {name: tor-2, spine: 172.31.255.2/24, bgp: {asn: 65002}}
hosts:
  - {name: r1-host-1, segment: rack-1, ip: 192.168.1.11, labels: {rack: "1"}}
  - {name: r2-host-1, segment: rack-2, ip: 192.168.2.11, labels: {rack: "2"}}
`

// standIn runs a BIRD in a host's namespace in place of the agent's
// speaker: it connects to the host's router as the host's ASN and
// announces one prefix, with the host as next hop.
func standIn(t testing.TB, st *State, host string, asn uint32, announce netip.Prefix) *daemon {
	t.Helper()
	h, _ := st.Scenario.Host(host)
	seg, _ := st.Scenario.Segment(h.Segment)
	r, _ := st.Scenario.Router(seg.Router)
	dir := st.names().HostDir(host)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`log stderr all;
router id %[1]s;
protocol device {}
protocol static announced { ipv4; route %[2]s blackhole; }
protocol bgp tor {
  local %[1]s as %[3]d;
  neighbor %[4]s as %[5]d;
  connect delay time 1;
  connect retry time 1;
  ipv4 { import none; export where proto = "announced"; next hop self; };
}
`, h.IP, announce, asn, seg.Gateway, r.BGP.ASN)
	if err := os.WriteFile(dir+"/bird.conf", []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := startDaemon(st, "bird-standin", host, st.names().Node(host), []string{"bird",
		"-c", dir + "/bird.conf", "-s", dir + "/bird.ctl", "-P", dir + "/bird.pid", "-f"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// birdLines renders a router's BIRD table as "prefix via|dev from proto"
// lines, primary routes only, sorted.
func birdLines(t testing.TB, st *State, router string) []string {
	t.Helper()
	bs, err := ReadBird(t.Context(), st, router)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range bs.Routes {
		if !r.Primary {
			continue
		}
		hop := "dev " + r.Dev
		if len(r.Via) > 0 {
			hop = "via " + r.Via[0].String()
		}
		out = append(out, r.Prefix.String()+" "+hop+" from "+r.Protocol)
	}
	slices.Sort(out)
	return out
}

// table100 lists a router's routes in RouterTable as "dst via gw proto p".
func table100(t testing.TB, st *State, router string) []string {
	return kernelTable(t, st, router, "100", "")
}

// kernelTable lists a router's routes in one table ("main", "100"), of one
// protocol ("" for any), as "dst via gw proto p".
func kernelTable(t testing.TB, st *State, router, table, proto string) []string {
	t.Helper()
	nr, err := ReadRoutes(t.Context(), router, "router", st.names().Node(router))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range nr.Routes {
		if r.Table == table && (proto == "" || r.Protocol == proto) {
			out = append(out, r.Dst+" via "+r.Gateway+" proto "+r.Protocol)
		}
	}
	slices.Sort(out)
	return out
}

// eventually polls check every 100 ms until it returns "" or timeout
// passes; then it fails the test with check's last complaint.
func eventually(t testing.TB, timeout time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The BIRD plumbing, with BIRD stand-ins in place of the agents' speakers:
// with no BGP the racks cannot reach each other (no static routes between
// them); with the routers' BIRD up and one stand-in per rack announcing a
// prefix, each router's BIRD table holds exactly its segments, the other
// router's segment and both announcements with the right next hops, its
// kernel table holds exactly the BGP routes, hosts reach each other and
// the announced addresses across racks; a stand-in that stops has its
// prefix withdrawn from both routers; down stops every BIRD.
func TestPrivilegedLabBirdPlumbing(t *testing.T) {
	requireBird(t)
	n := testLab(t)
	sc, err := ParseScenario([]byte(bgpRacks))
	if err != nil {
		t.Fatal(err)
	}
	topo, err := sc.Compile()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	st, err := Up(ctx, UpOptions{Name: n.Lab, Dir: n.Dir, Scenario: sc, InfraOnly: true, Progress: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sc.Routers {
		if got := table100(t, st, r.Name); len(got) > 0 {
			t.Errorf("%s: table 100 before BGP holds %v; BGP routers get no static routes", r.Name, got)
		}
	}
	rep, err := Probe(ctx, hostTargets(st))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed() != len(rep.Results) {
		t.Fatalf("hosts of different racks reach each other without BGP:\n%s", rep.Matrix())
	}

	if err := startRouterDaemons(ctx, st, hostSpeakers(sc, topo)); err != nil {
		t.Fatal(err)
	}
	announced := map[string]netip.Prefix{"r1-host-1": netip.MustParsePrefix("10.99.1.0/24"), "r2-host-1": netip.MustParsePrefix("10.99.2.0/24")}
	var targets []ProbeTarget
	standIns := map[string]*daemon{}
	for i, host := range []string{"r1-host-1", "r2-host-1"} {
		standIns[host] = standIn(t, st, host, uint32(64601+i), announced[host])
		addr := announced[host].Addr().Next()
		mustRun(t, "ip", "-n", n.Node(host), "addr", "add", addr.String()+"/32", "dev", "lo")
		targets = append(targets, ProbeTarget{Name: host + "-lo", Netns: n.Node(host), Addr: addr})
	}

	want := map[string][]string{
		"tor-1": {
			"10.99.1.0/24 via 192.168.1.11 from h_r1_host_1",
			"10.99.2.0/24 via 172.31.255.2 from r_tor_2",
			"192.168.1.0/24 dev s-rack-1 from segments",
			"192.168.2.0/24 via 172.31.255.2 from r_tor_2",
		},
		"tor-2": {
			"10.99.1.0/24 via 172.31.255.1 from r_tor_1",
			"10.99.2.0/24 via 192.168.2.11 from h_r2_host_1",
			"192.168.1.0/24 via 172.31.255.1 from r_tor_1",
			"192.168.2.0/24 dev s-rack-2 from segments",
		},
	}
	wantKernel := map[string][]string{
		"tor-1": {"10.99.1.0/24 via 192.168.1.11 proto bird", "10.99.2.0/24 via 172.31.255.2 proto bird", "192.168.2.0/24 via 172.31.255.2 proto bird"},
		"tor-2": {"10.99.1.0/24 via 172.31.255.1 proto bird", "10.99.2.0/24 via 192.168.2.11 proto bird", "192.168.1.0/24 via 172.31.255.1 proto bird"},
	}
	start := time.Now()
	eventually(t, 20*time.Second, func() string {
		for _, r := range []string{"tor-1", "tor-2"} {
			if got := birdLines(t, st, r); !slices.Equal(got, want[r]) {
				return fmt.Sprintf("%s's BIRD table:\n  %s\nwant:\n  %s", r, strings.Join(got, "\n  "), strings.Join(want[r], "\n  "))
			}
			if got := table100(t, st, r); !slices.Equal(got, wantKernel[r]) {
				return fmt.Sprintf("%s's table 100: %v, want %v", r, got, wantKernel[r])
			}
		}
		return ""
	})
	t.Logf("BGP converged %s after the stand-ins started", time.Since(start).Round(time.Millisecond))
	// Every session of both routers is up.
	for _, r := range []string{"tor-1", "tor-2"} {
		bs, err := ReadBird(ctx, st, r)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range bs.Protocols {
			if p.Proto == "BGP" && !p.Established() {
				t.Errorf("%s: session %s is %s", r, p.Name, p.Info)
			}
		}
	}

	rep, err = Probe(ctx, hostTargets(st))
	if err != nil {
		t.Fatal(err)
	}
	requireAllReached(t, rep)
	rep, err = Probe(ctx, targets)
	if err != nil {
		t.Fatal(err)
	}
	requireAllReached(t, rep)

	// `lab routes` shows the BIRD section for a BGP router.
	nr, err := st.ReadNode(ctx, Node{Name: "tor-2", Kind: "router", Netns: n.Node("tor-2")})
	if err != nil {
		t.Fatal(err)
	}
	if text := nr.Text(); !strings.Contains(text, "bird (AS 65002): 2 of 2 BGP sessions established") ||
		!strings.Contains(text, "10.99.1.0/24 via 172.31.255.1 from r_tor_1 AS64601i *") {
		t.Errorf("lab routes tor-2:\n%s", text)
	}

	// A speaker that leaves takes its prefix with it, at both routers.
	if err := syscall.Kill(standIns["r1-host-1"].PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	eventually(t, 10*time.Second, func() string {
		for _, r := range []string{"tor-1", "tor-2"} {
			for _, l := range append(birdLines(t, st, r), table100(t, st, r)...) {
				if strings.HasPrefix(l, "10.99.1.0/24 ") {
					return fmt.Sprintf("%s still holds %s", r, l)
				}
			}
		}
		return ""
	})
	t.Logf("withdrawn from both routers %s after the stand-in stopped", time.Since(start).Round(time.Millisecond))
	if got := birdLines(t, st, "tor-2"); !slices.Contains(got, "10.99.2.0/24 via 192.168.2.11 from h_r2_host_1") {
		t.Errorf("tor-2 lost its own host's route: %v", got)
	}

	var birds []int
	for _, p := range st.Processes {
		if p.Role == "bird" {
			birds = append(birds, p.PID)
		}
	}
	if len(birds) != 2 {
		t.Errorf("recorded BIRD processes %v, want one per router", birds)
	}
	if _, err := Down(context.Background(), DownOptions{Name: n.Lab, Dir: n.Dir}); err != nil {
		t.Fatal(err)
	}
	for _, pid := range birds {
		if alive(pid) {
			t.Errorf("BIRD %d runs after down", pid)
		}
	}
}
