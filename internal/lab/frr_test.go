package lab

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/<name>, rewriting it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to write it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from %s (run with -update after checking):\n%s", t.Name(), path, got)
	}
}

// The shipped l3-frr: both routers run FRR, each peers with its rack's
// hosts (rack-2's with the topology's MD5 key) and with the other router;
// the configurations are the golden files, and FRR's policy mirrors
// BIRD's: hosts get nothing back, the spine gets the segments and the
// router's own hosts' routes with next-hop-self.
func TestFRRConfig(t *testing.T) {
	sc := shipped(t, "l3-frr")
	topo, err := sc.Compile()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sc.Routers {
		if !r.BGP.RunsFRR() || r.BGP.Daemon != DaemonFRR {
			t.Errorf("router %s: bgp %+v, want daemon frr", r.Name, r.BGP)
		}
	}
	speakers := hostSpeakers(sc, topo)
	for _, router := range []string{"tor-1", "tor-2"} {
		conf := FRRConfig(sc, router, BirdPeers(sc, router, speakers))
		golden(t, "frr/"+router+".bgpd.conf", conf)
	}
	conf := FRRConfig(sc, "tor-2", BirdPeers(sc, "tor-2", speakers))
	for _, want := range []string{
		"neighbor 192.168.2.11 password lab-md5-key",
		"neighbor 192.168.2.11 passive",
		"neighbor 192.168.2.11 route-map lab-none out",
		"neighbor 172.31.255.1 route-map lab-spine-out out",
		"neighbor 172.31.255.1 next-hop-self",
		"bgp as-path access-list lab-from-routers seq 10 permit ^(65001)(_|$)",
		"ip prefix-list lab-segments seq 10 permit 192.168.2.0/24",
		"bgp graceful-restart",
	} {
		if !strings.Contains(conf, want+"\n") {
			t.Errorf("tor-2's bgpd.conf lacks %q", want)
		}
	}
	if strings.Contains(conf, "192.168.1.11 password") || strings.Contains(conf, "192.168.1.0/24") {
		t.Errorf("tor-2's bgpd.conf names tor-1's rack:\n%s", conf)
	}
	if z := FRRZebraConfig("tor-1"); !strings.Contains(z, "hostname tor-1\n") {
		t.Errorf("zebra.conf: %q", z)
	}
}

func TestScenarioRouterDaemon(t *testing.T) {
	sc, err := ParseScenario([]byte(bgpRacks))
	if err != nil {
		t.Fatal(err)
	}
	if sc.Routers[0].BGP.Daemon != DaemonBIRD || sc.Routers[0].BGP.RunsFRR() {
		t.Errorf("default daemon: %+v, want bird", sc.Routers[0].BGP)
	}
	mixed := strings.Replace(bgpRacks, "bgp: {asn: 65002}", "bgp: {asn: 65002, daemon: frr}", 1)
	if sc, err = ParseScenario([]byte(mixed)); err != nil {
		t.Fatal(err)
	}
	if sc.Routers[0].BGP.RunsFRR() || !sc.Routers[1].BGP.RunsFRR() {
		t.Errorf("a BIRD and an FRR router: %+v %+v", sc.Routers[0].BGP, sc.Routers[1].BGP)
	}
	bad := strings.Replace(bgpRacks, "bgp: {asn: 65002}", "bgp: {asn: 65002, daemon: quagga}", 1)
	_, err = ParseScenario([]byte(bad))
	if err == nil || !strings.Contains(err.Error(), `routers[1].bgp.daemon: "quagga": a lab router runs bird (BIRD 2, the default) or frr (FRRouting)`) {
		t.Errorf("err = %v, want one naming routers[1].bgp.daemon and the choices", err)
	}
}

// frrShowBGP is a router's `show bgp ipv4 unicast json` while host
// 192.168.1.11 restarts: its route is stale; a route from the other
// router, two paths of one prefix and the redistributed segment.
const frrShowBGP = `{
 "vrfId": 0, "vrfName": "default", "routerId": "172.31.255.1", "localAS": 65001,
 "routes": { "10.20.0.0/28": [{"stale":true,"valid":true,"bestpath":true,"peerId":"192.168.1.11","path":"64601","origin":"IGP","nexthops":[{"ip":"192.168.1.11","afi":"ipv4","used":true}]}],
"10.20.0.16/28": [{"valid":true,"bestpath":true,"peerId":"172.31.255.2","path":"65002 64602","origin":"IGP","nexthops":[{"ip":"172.31.255.2","afi":"ipv4","used":true}]}],
"10.20.0.32/28": [{"valid":true,"multipath":true,"peerId":"192.168.1.12","path":"64601","origin":"IGP","nexthops":[{"ip":"192.168.1.12"}]},{"valid":true,"bestpath":true,"peerId":"192.168.1.11","path":"64601","origin":"IGP","nexthops":[{"ip":"192.168.1.11"}]}],
"192.168.1.0/24": [{"valid":true,"bestpath":true,"peerId":"(unspec)","path":"","origin":"incomplete","nexthops":[{"ip":"0.0.0.0","afi":"ipv4","used":true}]}]
 } }`

func TestParseFRRRoutes(t *testing.T) {
	peers := []BirdPeer{
		{Protocol: "h_r1_host_1", Kind: "host", Addr: netip.MustParseAddr("192.168.1.11")},
		{Protocol: "h_r1_host_2", Kind: "host", Addr: netip.MustParseAddr("192.168.1.12")},
		{Protocol: "r_tor_2", Kind: "router", Addr: netip.MustParseAddr("172.31.255.2")},
	}
	routes, err := ParseFRRRoutes([]byte(frrShowBGP), peers, map[netip.Prefix]string{netip.MustParsePrefix("192.168.1.0/24"): "rack-1"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range routes {
		got = append(got, r.String())
	}
	want := []string{
		"10.20.0.0/28 via 192.168.1.11 from h_r1_host_1 AS64601i stale *",
		"10.20.0.16/28 via 172.31.255.2 from r_tor_2 AS64602i *",
		"10.20.0.32/28 via 192.168.1.11 from h_r1_host_1 AS64601i *",
		"10.20.0.32/28 via 192.168.1.12 from h_r1_host_2 AS64601i",
		"192.168.1.0/24 dev s-rack-1 from segments *",
	}
	if !slices.Equal(got, want) {
		t.Errorf("routes:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	for _, bad := range []string{`{"routes": {"10.20.0.0/33": []}}`, `{"routes": {"10.20.0.0/28": [{"valid":true,"peerId":"x","nexthops":[{"ip":"nope"}]}]}}`, `not json`} {
		if _, err := ParseFRRRoutes([]byte(bad), peers, nil); err == nil {
			t.Errorf("ParseFRRRoutes(%q) accepted it", bad)
		}
	}
}

func TestParseFRRSessions(t *testing.T) {
	text := `{"ipv4Unicast":{"routerId":"172.31.255.1","as":65001,"peers":{
  "192.168.1.11":{"remoteAs":64601,"state":"Established","peerState":"OK"},
  "172.31.255.2":{"remoteAs":65002,"state":"Active"}}}}`
	peers := []BirdPeer{
		{Protocol: "h_r1_host_1", Addr: netip.MustParseAddr("192.168.1.11")},
		{Protocol: "h_r1_host_2", Addr: netip.MustParseAddr("192.168.1.12")},
		{Protocol: "r_tor_2", Addr: netip.MustParseAddr("172.31.255.2")},
	}
	got, err := ParseFRRSessions([]byte(text), peers)
	if err != nil {
		t.Fatal(err)
	}
	want := []BirdProtocol{
		{Name: "h_r1_host_1", Proto: "BGP", State: "up", Info: "Established"},
		{Name: "h_r1_host_2", Proto: "BGP", State: "down", Info: "not configured"},
		{Name: "r_tor_2", Proto: "BGP", State: "start", Info: "Active"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("sessions %+v, want %+v", got, want)
	}
	if !got[0].Established() || got[2].Established() {
		t.Errorf("Established: %v %v", got[0].Established(), got[2].Established())
	}
}

// The shipped hybrid: the VPC router beside two ToRs is their BGP peer on
// the spine, with no host sessions; its bird.conf learns the VPC table
// from the kernel and announces it with its segments.
func TestHybridGatewayConfig(t *testing.T) {
	sc := shipped(t, "hybrid")
	topo, err := sc.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if !sc.BGPRouters() || sc.StaticRouters() {
		t.Errorf("hybrid: BGPRouters %v StaticRouters %v", sc.BGPRouters(), sc.StaticRouters())
	}
	speakers := hostSpeakers(sc, topo)
	if _, ok := speakers["a-1"]; ok || len(speakers) != 4 {
		t.Errorf("speakers %v: want the 4 rack hosts only", speakers)
	}
	peers := BirdPeers(sc, "vpc", speakers)
	var got []string
	for _, p := range peers {
		got = append(got, p.Protocol+" "+p.Addr.String())
	}
	if want := []string{"r_tor_1 172.30.255.1", "r_tor_2 172.30.255.2"}; !slices.Equal(got, want) {
		t.Errorf("vpc's peers %v, want %v", got, want)
	}
	golden(t, "hybrid/vpc.bird.conf", BirdConfig(sc, "vpc", peers))
	if got := routerDaemons(sc); got != "BIRD on tor-1, vpc; FRR on tor-2" {
		t.Errorf("routerDaemons = %q", got)
	}
	golden(t, "hybrid/tor-2.bgpd.conf", FRRConfig(sc, "tor-2", BirdPeers(sc, "tor-2", speakers)))
}

// A VPC router beside other routers: they run BGP, and it is their
// gateway on the spine (an address there, an ASN, BIRD); alone it has
// neither.
func TestScenarioHybridChecks(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("..", "..", "examples", "lab", "hybrid.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const gw = "{name: vpc, spine: 172.30.255.3/24, bgp: {asn: 65100}, vpc: {routeTable: rtb-hybrid, budget: 4}}"
	if !strings.Contains(string(base), gw) {
		t.Fatalf("hybrid.yaml lacks %s", gw)
	}
	tests := []struct{ name, from, to, want string }{
		{"no spine", gw, "{name: vpc, bgp: {asn: 65100}, vpc: {budget: 4}}",
			"routers[2].spine: required beside BGP routers: the vpc router is the VPC's gateway to them on the spine; give it an address there, e.g. 172.30.255.3/24"},
		{"no bgp", gw, "{name: vpc, spine: 172.30.255.3/24, vpc: {budget: 4}}", "routers[2].bgp: required beside BGP routers"},
		{"frr gateway", gw, "{name: vpc, spine: 172.30.255.3/24, bgp: {asn: 65100, daemon: frr}, vpc: {budget: 4}}", "routers[2].bgp.daemon: the VPC's gateway runs BIRD"},
		{"static beside", "{name: tor-1, spine: 172.30.255.1/24, bgp: {asn: 65001}}", "{name: tor-1, spine: 172.30.255.1/24}",
			`routers[0]: router "tor-1": beside a vpc router (vpc) every other router runs BGP`},
		{"shared asn", "bgp: {asn: 65100}", "bgp: {asn: 65001}", "routers[2].bgp.asn: 65001 is already routers[0]'s ASN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(string(base), tt.from, tt.to, 1)
			_, err := ParseScenario([]byte(doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	// A rack host whose group routes by vpc is refused; a zone host's is
	// not asked to name the gateway as a BGP peer.
	sc, err := ParseScenario([]byte(strings.Replace(string(base), `ip: 192.168.2.11, labels: {rack: "2"}`, `ip: 192.168.2.11, labels: {topology.kubernetes.io/zone: lab-1a}`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Compile(); err == nil || !strings.Contains(err.Error(), `host "r2-host-1" sits behind BGP router tor-2, but its group zone-a of network "hybrid" routes by vpc`) {
		t.Errorf("a vpc group behind a ToR: %v", err)
	}
}

func FuzzParseFRRRoutes(f *testing.F) {
	f.Add(frrShowBGP)
	f.Add(`{"routes": {"10.0.0.0/8": [{"valid": true, "peerId": "(unspec)", "nexthops": [{"ip": "0.0.0.0"}]}]}}`)
	peers := []BirdPeer{{Protocol: "h_a", Addr: netip.MustParseAddr("192.168.1.11")}}
	f.Fuzz(func(t *testing.T, text string) {
		routes, err := ParseFRRRoutes([]byte(text), peers, map[netip.Prefix]string{netip.MustParsePrefix("192.168.1.0/24"): "rack-1"})
		if err != nil {
			return
		}
		for _, r := range routes {
			if !r.Prefix.IsValid() || r.Prefix != r.Prefix.Masked() || r.Protocol == "" || slices.ContainsFunc(r.Via, netip.Addr.IsUnspecified) {
				t.Fatalf("accepted an incomplete route %+v", r)
			}
		}
		_, _ = ParseFRRSessions([]byte(text), peers)
	})
}
