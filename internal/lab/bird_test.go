package lab

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/fielderr"
	"github.com/terrane-net/terrane/internal/ipam"
)

func TestParseScenarioBGPRouters(t *testing.T) {
	sc, err := ParseScenario([]byte(bgpRacks))
	if err != nil {
		t.Fatal(err)
	}
	if !sc.BGPRouters() || sc.Routers[0].BGP.ASN != 65001 || sc.Routers[1].BGP.ASN != 65002 {
		t.Errorf("routers %+v %+v", sc.Routers[0].BGP, sc.Routers[1].BGP)
	}
	if _, err := sc.Compile(); err != nil {
		t.Fatal(err)
	}

	seg := "segments: [{name: a, subnet: 192.168.1.0/24, router: r1}, {name: b, subnet: 192.168.2.0/24, router: r2}, {name: c, subnet: 192.168.3.0/24, router: r3}]\nhosts: [{name: h, segment: a}]\n"
	tests := []struct {
		name, routers string
		want          []string
	}{
		{"shape", "routers: [{name: r1, spine: 10.255.0.1/24, bgp: 65001}, {name: r2, spine: 10.255.0.2/24, bgp: {asn: \"65002\", as: 1}}, {name: r3, spine: 10.255.0.3/24}]",
			[]string{"routers[0].bgp: routers[0].bgp is the number 65001; want a mapping with the fields asn",
				`routers[1].bgp.asn: is the string "65002"; want a number`, "routers[1].bgp.as: unknown field; known fields here: asn"}},
		{"values", "routers: [{name: r1, spine: 10.255.0.1/24, bgp: {asn: 0}}, {name: r2, spine: 10.255.0.2/24, bgp: {asn: 23456}}, {name: r3, spine: 10.255.0.3/24, bgp: {asn: 4294967296}}]",
			[]string{"routers[0].bgp.asn: 0 is not an ASN", "routers[1].bgp.asn: 23456 is AS_TRANS", "routers[2].bgp.asn: 4294967296 is not an ASN"}},
		{"missing asn", "routers: [{name: r1, spine: 10.255.0.1/24, bgp: {}}, {name: r2, spine: 10.255.0.2/24, bgp: {asn: 2}}, {name: r3, spine: 10.255.0.3/24, bgp: {asn: 3}}]",
			[]string{"routers[0].bgp.asn: required: the router's ASN"}},
		{"unique, all or none", "routers: [{name: r1, spine: 10.255.0.1/24, bgp: {asn: 65001}}, {name: r2, spine: 10.255.0.2/24, bgp: {asn: 65001}}, {name: r3, spine: 10.255.0.3/24}]",
			[]string{"routers[1].bgp.asn: 65001 is already routers[0]'s ASN", "routers[2].bgp: required: routers[0] (r1) runs BGP, so every router does"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseScenario([]byte(inlineTopology + seg + tt.routers))
			var ve *fielderr.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a *fielderr.ValidationError", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// The topology must agree with BGP routers: their hosts route by bgp,
// name the router as a peer with its ASN, and use an ASN of their own.
func TestCheckTopologyBGP(t *testing.T) {
	bad := strings.NewReplacer(
		"routing: bgp\n          bgp: {asn: 64601, peers: [{address: 192.168.1.1, asn: 65001}]}", "routing: l2",
		"bgp: {asn: 64602, peers: [{address: 192.168.2.1, asn: 65002}]}", "bgp: {asn: 65001, peers: [{address: 192.168.2.1, asn: 65009}, {address: 10.0.0.1, asn: 1}]}",
	).Replace(bgpRacks)
	bad += "  - {name: r2-host-2, segment: rack-2, labels: {rack: \"2\"}}\n"
	sc, err := ParseScenario([]byte(bad))
	if err != nil {
		t.Fatal(err)
	}
	_, err = sc.Compile()
	for _, w := range []string{
		`hosts[0].labels: host "r1-host-1" sits behind BGP router tor-1, but its group rack-1 of network "racks" routes by l2`,
		`hosts[1]: host "r2-host-1"'s group rack-2 (network "racks") peers with 192.168.2.1 as AS 65009, but router tor-2 is AS 65002; write {address: 192.168.2.1, asn: 65002}`,
		`hosts[1]: host "r2-host-1"'s group rack-2 (network "racks") uses AS 65001, which is router tor-1's`,
		`hosts[2]: host "r2-host-2"'s group rack-2`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	missing := strings.Replace(bgpRacks, "peers: [{address: 192.168.1.1, asn: 65001}]", "peers: [{address: 192.168.1.9, asn: 65001}]", 1)
	sc, err = ParseScenario([]byte(missing))
	if err != nil {
		t.Fatal(err)
	}
	if _, err = sc.Compile(); err == nil || !strings.Contains(err.Error(), `hosts[0]: host "r1-host-1"'s group rack-1 (network "racks") does not name its router tor-1 as a BGP peer; add {address: 192.168.1.1, asn: 65001} to the group's bgp.peers`) {
		t.Errorf("missing peer: %v", err)
	}
}

func TestBirdPeersAndConfig(t *testing.T) {
	sc, err := ParseScenario([]byte(bgpRacks + "  - {name: r1-host-0, segment: rack-1, ip: 192.168.1.10, labels: {rack: \"1\"}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	topo, err := sc.Compile()
	if err != nil {
		t.Fatal(err)
	}
	speakers := hostSpeakers(sc, topo)
	if len(speakers) != 3 || speakers["r1-host-1"].ASN != 64601 || speakers["r2-host-1"].ASN != 64602 {
		t.Errorf("speakers %+v", speakers)
	}
	peers := BirdPeers(sc, "tor-1", speakers)
	var got []string
	for _, p := range peers {
		got = append(got, p.Protocol+" "+p.Kind+" "+p.Local.String()+"→"+p.Addr.String())
	}
	want := []string{"h_r1_host_0 host 192.168.1.1→192.168.1.10", "h_r1_host_1 host 192.168.1.1→192.168.1.11", "r_tor_2 router 172.31.255.1→172.31.255.2"}
	if !slices.Equal(got, want) {
		t.Errorf("peers of tor-1:\n%v\nwant\n%v", got, want)
	}
	conf := BirdConfig(sc, "tor-1", peers)
	for _, w := range []string{
		"router id 172.31.255.1;",
		"kernel table 100;",
		"export where source = RTS_BGP;",
		"protocol bgp h_r1_host_1 from lab_peer {\n  description \"host r1-host-1\";\n  local 192.168.1.1 as 65001;\n  neighbor 192.168.1.11 as 64601;\n  passive on;\n  ipv4 { import all; export none; };\n}",
		"protocol bgp r_tor_2 from lab_peer {\n  description \"router tor-2 (spine)\";\n  local 172.31.255.1 as 65001;\n  neighbor 172.31.255.2 as 65002;\n",
		`export where source = RTS_DEVICE || (source = RTS_BGP && proto ~ "h_*");`,
		"graceful restart on;",
		`interface "s-*";`,
	} {
		if !strings.Contains(conf, w) {
			t.Errorf("bird.conf lacks %q:\n%s", w, conf)
		}
	}
	if BirdPeers(sc, "r1-host-1", speakers) != nil {
		t.Error("a host has BIRD peers")
	}
	// A password in the group's peer entry reaches BIRD.
	sc2, err := ParseScenario([]byte(strings.Replace(bgpRacks, "{address: 192.168.1.1, asn: 65001}", "{address: 192.168.1.1, asn: 65001, password: s3cret}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	topo2, err := sc2.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if conf := BirdConfig(sc2, "tor-1", BirdPeers(sc2, "tor-1", hostSpeakers(sc2, topo2))); !strings.Contains(conf, `password "s3cret";`) {
		t.Errorf("no password in:\n%s", conf)
	}
}

// BGP routers get no static routes: BIRD carries everything.
func TestRouterRoutesBGP(t *testing.T) {
	sc, err := ParseScenario([]byte(bgpRacks))
	if err != nil {
		t.Fatal(err)
	}
	topo, err := sc.Compile()
	if err != nil {
		t.Fatal(err)
	}
	fs := bgpState(sc)
	for r, routes := range RouterRoutes(sc, topo, fs) {
		if len(routes) > 0 {
			t.Errorf("router %s: static routes %v", r, routes)
		}
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("10.20.0.0/27"), netip.MustParsePrefix("10.20.128.0/28"),
		netip.MustParsePrefix("192.168.1.0/24"), netip.MustParsePrefix("192.168.2.0/24"),
	}
	got := BGPWant(sc, topo, fs)
	for _, r := range []string{"tor-1", "tor-2"} {
		if !slices.Equal(got[r], want) {
			t.Errorf("BGPWant[%s] = %v, want %v (blocks merged, segments)", r, got[r], want)
		}
	}
}

// bgpState: r1-host-1 owns two adjacent blocks, r2-host-1 one.
func bgpState(sc *Scenario) FabricState {
	fs := FabricState{Blocks: map[string][]ipam.BlockInfo{}, Groups: map[string]map[string][]netip.Prefix{"racks": {
		"rack-1": {netip.MustParsePrefix("10.20.0.0/17")}, "rack-2": {netip.MustParsePrefix("10.20.128.0/17")},
	}}}
	for _, h := range sc.Hosts {
		group := "rack-" + h.Labels["rack"]
		fs.Hosts = append(fs.Hosts, ipam.HostInfo{Name: h.Name, IP: h.IP, Labels: h.Labels, Groups: map[string]string{"racks": group}})
	}
	fs.Blocks["racks"] = []ipam.BlockInfo{
		{Prefix: netip.MustParsePrefix("10.20.0.0/28"), Host: "r1-host-1", Group: "rack-1"},
		{Prefix: netip.MustParsePrefix("10.20.0.16/28"), Host: "r1-host-1", Group: "rack-1"},
		{Prefix: netip.MustParsePrefix("10.20.128.0/28"), Host: "r2-host-1", Group: "rack-2"},
	}
	return fs
}

const birdShowRoute = `BIRD 2.0.12 ready.
Table master4:
10.20.0.0/27         unicast [h_r1_host_1 10:26:16.893] * (100) [AS64601i]
	via 192.168.1.11 on s-rack-1
                     unicast [h_r1_host_2 10:26:17.001] (100) [AS64601i]
	via 192.168.1.12 on s-rack-1
192.168.2.0/24       unicast [r_tor_2 2026-11-26 10:26:15] * (100) [AS65002i]
	via 172.31.255.2 on spine
	Type: BGP univ
	BGP.as_path: 65002
192.168.1.0/24       unicast [segments 10:26:15.932] * (240)
	dev s-rack-1
10.99.0.0/24         blackhole [static1 10:26:15.932] * (200)
10.98.0.0/24         unicast [r_tor_3 10:26:15.932] * (100) [AS65003i]
	via 172.31.255.3 on spine weight 1
	via 172.31.255.4 on spine weight 1
`

func TestParseBirdRoutes(t *testing.T) {
	routes, err := ParseBirdRoutes(birdShowRoute)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range routes {
		got = append(got, r.String())
	}
	want := []string{
		"10.20.0.0/27 via 192.168.1.11 from h_r1_host_1 AS64601i *",
		"10.20.0.0/27 via 192.168.1.12 from h_r1_host_2 AS64601i",
		"10.98.0.0/24 via 172.31.255.3 via 172.31.255.4 from r_tor_3 AS65003i *",
		"10.99.0.0/24 blackhole from static1 *",
		"192.168.1.0/24 dev s-rack-1 from segments *",
		"192.168.2.0/24 via 172.31.255.2 from r_tor_2 AS65002i *",
	}
	if !slices.Equal(got, want) {
		t.Errorf("routes:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	bs := &BirdState{Routes: routes}
	if ps := bs.Prefixes(); len(ps) != 5 {
		t.Errorf("prefixes %v, want 5 distinct", ps)
	}
	for _, bad := range []string{
		"Table master4:\nnot-a-prefix unicast [x 1] *\n",
		"Table master4:\n\tvia 10.0.0.1 on x\n",
		"Table master4:\n             unicast [x 1] *\n",
		"Table master4:\n10.0.0.0/8 unicast\n",
		"Table master4:\n10.0.0.0/8 unicast [x 1] *\n\tvia nope on x\n",
	} {
		if _, err := ParseBirdRoutes(bad); err == nil {
			t.Errorf("ParseBirdRoutes(%q) accepted it", bad)
		}
	}
}

func TestParseBirdProtocols(t *testing.T) {
	out := `BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     10:26:15.931  
fabric     Kernel     master4    up     10:26:15.931  
h_r1_host_1 BGP        ---        up     10:26:16.850  Established   
h_r1_host_2 BGP        ---        start  2026-11-26 10:26:20  Passive       Received: Administrative shutdown
`
	ps := ParseBirdProtocols(out)
	if len(ps) != 4 {
		t.Fatalf("%d protocols: %+v", len(ps), ps)
	}
	if !ps[2].Established() || ps[3].Established() || ps[3].Info != "Passive Received: Administrative shutdown" || ps[1].Proto != "Kernel" {
		t.Errorf("%+v", ps)
	}
}

func FuzzParseBirdRoutes(f *testing.F) {
	f.Add(birdShowRoute)
	f.Add("Table master4:\n10.0.0.0/8 unicast [x 1] *\n")
	f.Fuzz(func(t *testing.T, text string) {
		routes, err := ParseBirdRoutes(text)
		if err != nil {
			return
		}
		for _, r := range routes {
			if !r.Prefix.IsValid() || r.Protocol == "" || r.Type == "" {
				t.Fatalf("accepted an incomplete route %+v", r)
			}
		}
		_ = ParseBirdProtocols(text)
	})
}
