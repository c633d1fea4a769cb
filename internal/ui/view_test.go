package ui

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/topology"
	"github.com/terrane-net/terrane/internal/usage"
)

const testTopology = `
networks:
  - {name: pods, cidr: 10.0.0.0/16, blockSize: 28, default: true}
topologies:
  - networks: [pods]
    groups:
      - name: zone-a
        assignment: {matchLabels: {zone: a}}
        routing: bgp
        groups:
          - {name: rack-1, assignment: {matchLabels: {rack: "1"}}}
          - {name: rack-2, assignment: {matchLabels: {rack: "2"}}}
      - {name: vpc-b, assignment: {matchLabels: {zone: b}}, routing: vpc}
`

// input builds a small live state: h1, h2 in zone-a's racks, h3 in vpc-b;
// a block each for their agents, and two VM ports on h1 (in a block of the
// server's: two blocks on h1).
func input(t *testing.T) Input {
	t.Helper()
	topo, err := topology.Load([]byte(testTopology))
	if err != nil {
		t.Fatal(err)
	}
	budgets := ipam.Budgets{VPC: 50, BGP: 100}
	al, _, err := ipam.New(topo, ipam.Options{Budgets: budgets})
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range []ipam.HostSpec{
		{Name: "h1", Labels: map[string]string{"zone": "a", "rack": "1"}},
		{Name: "h2", Labels: map[string]string{"zone": "a", "rack": "2"}},
		{Name: "h3", Labels: map[string]string{"zone": "b"}},
	} {
		h.IP = netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})
		if _, err := al.AddHost(h); err != nil {
			t.Fatal(err)
		}
		if _, _, err := al.ClaimBlock(h.Name, "pods"); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"p1", "p2"} {
		if _, _, err := al.AllocateEndpoint(ipam.EndpointRequest{ID: id, Host: "h1", Network: "pods"}); err != nil {
			t.Fatal(err)
		}
	}
	var reports []usage.NetworkReport
	for _, n := range topo.Networks {
		r, err := usage.Describe(al, n, budgets)
		if err != nil {
			t.Fatal(err)
		}
		reports = append(reports, r)
	}
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	since := now.Add(-time.Hour)
	bgp := &api.BGPReport{Hosts: []api.BGPHostReport{
		{Host: "h1", Groups: map[string]string{"pods": "zone-a/rack-1"}, Reported: true, Status: &api.BGPStatus{
			Peers:     []api.BGPPeerStatus{{Address: netip.MustParseAddr("192.0.2.254"), ASN: 65001, State: "established", Since: since, PrefixesSent: 1, LastError: "old news"}},
			Announced: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/28")}}},
		{Host: "h2", Groups: map[string]string{"pods": "zone-a/rack-2"}, Reported: true, Status: &api.BGPStatus{
			Peers: []api.BGPPeerStatus{{Address: netip.MustParseAddr("192.0.2.253"), ASN: 65002, State: "active", Since: since, LastError: "<script>alert(1)</script>"}}}},
	}}
	return Input{Title: "test", Live: true, Revision: 7, Mode: "elastic", Alloc: al, Reports: reports, BGP: bgp,
		VPC: &api.VPCStatus{}, Seen: map[string]time.Time{"h1": now.Add(-5 * time.Second), "h2": now.Add(-SilentAfter)}, Now: now}
}

func TestBuild(t *testing.T) {
	v := Build(input(t))
	if len(v.Networks) != 1 {
		t.Fatalf("networks: %+v", v.Networks)
	}
	n := v.Networks[0]
	if len(n.Groups) != 2 || n.Groups[0].Path != "zone-a" || len(n.Groups[0].Children) != 2 || n.Groups[0].Children[1].Path != "zone-a/rack-2" || !n.Groups[0].Children[0].Leaf || n.Groups[0].Leaf {
		t.Fatalf("tree: %s", mustJSON(n.Groups))
	}
	rack1 := n.Groups[0].Children[0]
	if rack1.Allocated != 2 || rack1.Hosts != 1 || rack1.Blocks != 2 || rack1.InBlocks != 32 || rack1.Share != float64(2)/float64(rack1.Assignable) {
		t.Errorf("rack-1: %+v", rack1)
	}
	if zone := n.Groups[0]; zone.Allocated != 2 || zone.Hosts != 2 || zone.InBlocks != 48 {
		t.Errorf("zone-a sums its racks: %+v", zone)
	}
	// Gauges: the VPC table and each ToR, copied from usage's report.
	var kinds []string
	for _, g := range v.Gauges {
		kinds = append(kinds, g.Kind+" "+g.Name)
		if g.Kind == "bgp" && (g.Used != 1 || g.Budget != 100) {
			t.Errorf("ToR gauge %+v: want 1 of 100", g)
		}
		if g.Kind == "vpc" && (g.Used != n.Routes.VPC || g.Budget != 50 || g.Direct != n.Routes.VPCDirectShare) {
			t.Errorf("VPC gauge %+v, routes %+v", g, n.Routes)
		}
	}
	if got := strings.Join(kinds, ", "); got != "vpc route table, bgp ToR of zone-a/rack-1, bgp ToR of zone-a/rack-2" {
		t.Errorf("gauges: %s", got)
	}
	// Sessions: the one not established first, with why; an established
	// one's old error is not shown.
	if len(v.BGP) != 2 || v.BGP[0].Host != "h2" || v.BGP[0].Error == "" || !v.BGP[0].Stale || v.BGP[1].Error != "" || v.BGP[1].Stale || v.BGPHosts != 2 || v.BGPUp != 1 {
		t.Errorf("sessions: %s (hosts %d, up %d)", mustJSON(v.BGP), v.BGPHosts, v.BGPUp)
	}
	// A silent host's established session is stale: not up.
	in := input(t)
	in.Seen["h1"] = in.Now.Add(-time.Hour)
	if w := Build(in); w.BGPUp != 0 || !w.BGP[0].Stale || !w.BGP[1].Stale {
		t.Errorf("sessions of silent hosts: %s (up %d)", mustJSON(w.BGP), w.BGPUp)
	}
	// Hosts: h2 silent for SilentAfter, h3 never heard from.
	silent := map[string]bool{}
	for _, h := range v.Hosts {
		silent[h.Name] = h.Silent
	}
	if silent["h1"] || !silent["h2"] || !silent["h3"] || v.Silent != 2 {
		t.Errorf("silent: %v (%d)", silent, v.Silent)
	}
	h1, ok := v.HostByName("h1")
	if !ok || h1.Seen != 5 || len(h1.Blocks) != 2 || h1.Blocks[0].Used != 0 || h1.Blocks[1].Used != 2 || h1.Blocks[1].Size != 16 || h1.Groups["pods"] != "zone-a/rack-1" {
		t.Errorf("h1: %+v", h1)
	}
	if one, ok := HostOf(input(t), "h1"); !ok || mustJSON(one) != mustJSON(h1) {
		t.Errorf("HostOf(h1) = %+v, want the view's %+v", one, h1)
	}
}

// A plan's view has no liveness: nobody is silent, nothing is seen.
func TestBuildPlan(t *testing.T) {
	in := input(t)
	in.Live, in.BGP, in.VPC, in.Seen = false, nil, nil, nil
	fits := true
	in.Fits = &fits
	v := Build(in)
	if v.Silent != 0 || len(v.BGP) != 0 || v.Hosts[0].Seen != -1 {
		t.Errorf("plan view: silent %d, sessions %d, seen %d", v.Silent, len(v.BGP), v.Hosts[0].Seen)
	}
	var b bytes.Buffer
	if err := Render(&b, v); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "the plan fits") || strings.Contains(b.String(), `id="bgp"`) {
		t.Errorf("a plan's page shows the verdict and no BGP section")
	}
}

// The page escapes what it shows and carries the hosts as JSON the script
// can parse.
func TestRender(t *testing.T) {
	v := Build(input(t))
	var b bytes.Buffer
	if err := Render(&b, v); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if strings.Contains(page, "<script>alert(1)") {
		t.Fatal("a peer's error is not escaped")
	}
	for _, want := range []string{`data-key="pods/zone-a/rack-1"`, `data-leaf`, `data-hosts-of="pods/zone-a/rack-2"`, `data-kind="bgp"`, `data-state="active"`, `id="silentcount">2<`, `--heat: hsl(`,
		`title="zone-a/rack-1 (bgp): 2 of 32 addresses allocated (6.2%), 32 in blocks; 1 hosts, 2 blocks; prefixes 10.0.0.0/27"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	start := strings.Index(page, `<script type="application/json" id="hosts-data">`)
	end := strings.Index(page[start:], "</script>")
	var hosts []Host
	if err := json.Unmarshal([]byte(page[start+len(`<script type="application/json" id="hosts-data">`):start+end]), &hosts); err != nil || len(hosts) != 3 {
		t.Errorf("hosts JSON in the page: %v (%d hosts)", err, len(hosts))
	}
}

func TestHeat(t *testing.T) {
	for _, c := range []struct {
		share float64
		want  string
	}{{-1, "hsl(120, 70%, 50%)"}, {0, "hsl(120, 70%, 50%)"}, {0.5, "hsl(60, 70%, 46%)"}, {1, "hsl(0, 70%, 42%)"}, {3, "hsl(0, 70%, 42%)"}} {
		if got := Heat(c.share); got != c.want {
			t.Errorf("Heat(%v) = %s, want %s", c.share, got, c.want)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// With the VPC reconciler configured, its tables replace the routing
// core's VPC figure: what the cloud holds, per table and family.
func TestBuildVPCReconciler(t *testing.T) {
	in := input(t)
	in.VPC = &api.VPCStatus{Configured: true, Active: true, Tables: []api.VPCTableStatus{{ID: "rtb-1", Groups: []string{"vpc-b"},
		Families: []api.VPCFamilyStatus{{Family: "ipv4", Routes: 7, Budget: 8, Needed: 7, Fits: true, DirectShare: 0.25}}}}}
	v := Build(in)
	var vpc []Gauge
	for _, g := range v.Gauges {
		if g.Kind == "vpc" {
			vpc = append(vpc, g)
		}
	}
	if len(vpc) != 1 || vpc[0].Name != "rtb-1 ipv4" || vpc[0].Used != 7 || vpc[0].Budget != 8 || vpc[0].Direct != 0.25 || vpc[0].Source != "reconciler" {
		t.Errorf("VPC gauges: %s", mustJSON(vpc))
	}
	var b bytes.Buffer
	if err := Render(&b, v); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "<td>rtb-1</td><td>ipv4</td><td>7</td><td>8</td>") {
		t.Errorf("the VPC section lacks the table's row")
	}
}

// TestContentSecurityPolicyAdmitsThePagesScript: the policy names the
// hash of the script exactly as the page inlines it, so a browser runs
// that script and no other.
func TestContentSecurityPolicyAdmitsThePagesScript(t *testing.T) {
	var buf bytes.Buffer
	if err := Render(&buf, Build(Input{Title: "t", Now: time.Now()})); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	start := strings.LastIndex(page, "<script>")
	end := strings.LastIndex(page, "</script>")
	if start < 0 || end < start {
		t.Fatal("no inline script in the page")
	}
	sum := sha256.Sum256([]byte(page[start+len("<script>") : end]))
	want := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	if csp := ContentSecurityPolicy(); !strings.Contains(csp, "script-src "+want+";") || strings.Contains(csp, "unsafe-inline'; connect") {
		t.Errorf("policy %q, want script-src %s and no inline scripts", csp, want)
	}
}
