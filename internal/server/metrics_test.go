package server

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/metrics"
	"github.com/terrane-net/terrane/internal/usage"
)

// metricsTopology has a bgp fabric (pods), a VPC zone (cloud) and a
// network of one block (tiny), so every figure of /metrics has a value.
const metricsTopology = `
networks:
  - {name: pods, cidr: 10.10.0.0/16, blockSize: 28, default: true}
  - {name: cloud, cidr: 10.20.0.0/16, blockSize: 28}
  - {name: tiny, cidr: 10.30.0.0/28, blockSize: 28}
topologies:
  - networks: [pods]
    groups:
      - name: fabric
        routing: bgp
        bgp: {asn: 64601, peers: [{address: 192.168.1.1, asn: 65001}]}
        groups:
          - {name: rack-1, advertise: blocks, assignment: {matchLabels: {rack: "1"}}}
          - {name: rack-2, advertise: blocks, assignment: {matchLabels: {rack: "2"}}}
  - networks: [cloud]
    groups:
      - {name: zone-a, routing: vpc, assignment: {matchLabels: {zone: a}}}
  - networks: [tiny]
    groups:
      - {name: all, assignment: {matchLabels: {zone: a}}}
`

// TestMetricsScrape: block claims, a VM port, an agent's report, a
// duplicate address and BGP reports, then a real scrape of /metrics over
// HTTP, parsed as Prometheus parses it: the figures are those of /v1/plan
// (one computation), the events are counted, and every family is in the
// catalogue with its type and labels.
func TestMetricsScrape(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	s.must(adminToken, "POST", "/v1/topology", map[string]any{"topology": metricsTopology, "budgets": map[string]int{"vpc": 50, "bgp": 10}}, 200)
	s.must(adminToken, "PUT", "/v1/hosts/n1", map[string]any{"ip": "192.0.2.1", "labels": map[string]string{"rack": "1", "zone": "a"}}, 200)
	s.must(adminToken, "PUT", "/v1/hosts/n2", map[string]any{"ip": "192.0.2.2", "labels": map[string]string{"rack": "2", "zone": "a"}}, 200)

	// Claims: two ok in pods, one in cloud, tiny's one block then exhausted,
	// a network that does not exist (counted under network="").
	var blocks []netip.Prefix
	for range 2 {
		out := s.must(n1Token, "POST", "/v1/hosts/n1/blocks", map[string]any{"network": "pods"}, 201)
		blocks = append(blocks, netip.MustParsePrefix(out["block"].(string)))
	}
	s.must(n1Token, "POST", "/v1/hosts/n1/blocks", map[string]any{"network": "cloud"}, 201)
	s.must(n1Token, "POST", "/v1/hosts/n1/blocks", map[string]any{"network": "tiny"}, 201)
	if code, body := s.call(n1Token, "POST", "/v1/hosts/n1/blocks", map[string]any{"network": "tiny"}); code == 201 {
		t.Fatalf("a second block of a /28 network of /28 blocks: %v", body)
	}
	if code, _ := s.call(n1Token, "POST", "/v1/hosts/n1/blocks", map[string]any{"network": "nosuch"}); code == 201 {
		t.Fatal("a block of a network that does not exist")
	}

	// A VM port, n1's pods reported, and n2 claiming the VM port's address:
	// held twice, outside n2's blocks.
	out := s.must(adminToken, "POST", "/v1/endpoints", map[string]any{"id": "vm-1", "host": "n1", "network": "pods"}, 201)
	vmAddr := netip.MustParseAddr(out["endpoint"].(map[string]any)["addr"].(string))
	b := blocks[0]
	s.must(n1Token, "PUT", "/v1/hosts/n1/addresses", api.AddressReport{Full: true,
		Added:  []ipam.ReportedAddress{pod(b.Addr(), b, "c0"), pod(b.Addr().Next(), b, "c1")},
		Blocks: []ipam.ReportedBlock{{Network: "pods", Prefix: b, Used: 2, Open: true}, {Network: "pods", Prefix: blocks[1], Open: true}}}, 200)
	s.must(adminToken, "PUT", "/v1/hosts/n2/addresses", api.AddressReport{Full: true,
		Added: []ipam.ReportedAddress{pod(vmAddr, netip.PrefixFrom(vmAddr, 28).Masked(), "intruder")}}, 200)

	// BGP: n1's session is up, n2's is not; n3's last report says up, but
	// n3 has been silent for a minute (its last heartbeat).
	s.must(adminToken, "PUT", "/v1/hosts/n3", map[string]any{"ip": "192.0.2.3", "labels": map[string]string{"rack": "1", "zone": "a"}}, 200)
	for host, state := range map[string]string{"n1": "established", "n2": "active", "n3": "established"} {
		s.must(adminToken, "PUT", "/v1/hosts/"+host+"/bgp", api.BGPStatus{Peers: []api.BGPPeerStatus{{Address: netip.MustParseAddr("192.168.1.1"), ASN: 65001, State: state}}}, 200)
	}
	if _, err := s.state.Heartbeat(context.Background(), "n3", time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}

	f, err := metrics.Scrape(http.DefaultClient, s.url+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if bad := metrics.Verify(f, "server"); len(bad) > 0 {
		t.Errorf("the exposition differs from the catalogue:\n%v", bad)
	}
	// Every metric of the catalogue is exposed but the VPC reconciler's
	// (no --vpc-config here; TestServerRunsVPCReconciler scrapes them).
	for _, name := range metrics.Missing(f, "server") {
		if !strings.HasPrefix(name, "terrane_vpc_") || strings.HasPrefix(name, "terrane_vpc_table_") {
			t.Errorf("the scrape lacks %s", name)
		}
	}

	// The figures /v1/plan reports, from the same computation.
	var plan api.Report
	s.get("/v1/plan", &plan)
	byName := map[string]usage.NetworkReport{}
	for _, n := range plan.Networks {
		byName[n.Name] = n
	}
	want := func(name string, v float64, labels ...string) {
		t.Helper()
		got, ok := f.Value(name, labels...)
		if !ok {
			t.Errorf("no %s%v", name, labels)
		} else if got != v {
			t.Errorf("%s%v = %g, want %g", name, labels, got, v)
		}
	}
	for _, n := range plan.Networks {
		want("terrane_addresses_allocated", float64(n.Allocated), "network", n.Name)
		want("terrane_addresses_capacity", float64(n.Capacity), "network", n.Name)
		want("terrane_addresses_free", float64(n.Capacity-n.Allocated), "network", n.Name)
		want("terrane_blocks", float64(n.Blocks), "network", n.Name)
		for _, g := range n.Groups {
			want("terrane_group_addresses_capacity", float64(g.Assignable), "network", n.Name, "group", g.Path)
			want("terrane_group_addresses_allocated", float64(g.Allocated), "network", n.Name, "group", g.Path)
			want("terrane_group_addresses_free", float64(g.Assignable-g.Allocated), "network", n.Name, "group", g.Path)
			want("terrane_group_blocks", float64(g.Blocks), "network", n.Name, "group", g.Path)
			want("terrane_group_hosts", float64(g.Hosts), "network", n.Name, "group", g.Path)
		}
	}
	// Known values: two pods and the VM port in pods; n1's two blocks.
	want("terrane_addresses_allocated", 3, "network", "pods")
	want("terrane_group_addresses_allocated", 3, "network", "pods", "group", "fabric/rack-1")
	want("terrane_group_blocks", 2+1, "network", "pods", "group", "fabric/rack-1") // the VM port's server block too
	want("terrane_hosts", 3)
	// Route budgets: the ToR of rack-1 as plan counts it (the fabric's
	// most loaded ToR), rack-2's ToR learns nothing; the VPC table.
	want("terrane_tor_routes", float64(byName["pods"].Routes.BGP), "network", "pods", "group", "fabric/rack-1")
	want("terrane_tor_routes", 0, "network", "pods", "group", "fabric/rack-2")
	want("terrane_tor_route_budget", 10, "network", "pods", "group", "fabric/rack-1")
	if byName["pods"].Routes.BGP < 1 {
		t.Errorf("plan: the ToR of rack-1 learns %d routes, want at least 1", byName["pods"].Routes.BGP)
	}
	want("terrane_vpc_table_routes", float64(byName["cloud"].Routes.VPC), "network", "cloud")
	want("terrane_vpc_table_route_budget", 50, "network", "cloud")
	if byName["cloud"].Routes.VPC < 1 {
		t.Errorf("plan: the VPC table of cloud has %d routes, want at least 1", byName["cloud"].Routes.VPC)
	}
	// Claims, by result, and their latency histogram.
	want("terrane_block_claims_total", 2, "network", "pods", "result", "ok")
	want("terrane_block_claims_total", 1, "network", "tiny", "result", "ok")
	want("terrane_block_claims_total", 1, "network", "tiny", "result", "exhausted")
	want("terrane_block_claims_total", 1, "network", "", "result", "error")
	want("terrane_block_claim_duration_seconds", 2, "network", "pods")
	// The audit: what terrane ctl check finds.
	var check api.CheckReport
	s.get("/v1/check", &check)
	kinds := map[string]float64{}
	for _, fd := range check.Findings {
		kinds[fd.Kind]++
	}
	if kinds["address-twice"] != 1 {
		t.Errorf("ctl check: %+v, want one address held twice", check.Findings)
	}
	for _, k := range append(leakKinds, "address-twice") {
		want("terrane_check_findings", kinds[k], "kind", k)
	}
	// BGP sessions as reported.
	want("terrane_bgp_session_up", 1, "host", "n1", "peer", "192.168.1.1")
	want("terrane_bgp_session_up", 0, "host", "n2", "peer", "192.168.1.1")
	want("terrane_bgp_session_up", 0, "host", "n3", "peer", "192.168.1.1") // silent: its report is stale
	if age, ok := f.Value("terrane_bgp_report_age_seconds", "host", "n1"); !ok || age < 0 || age > 60 {
		t.Errorf("terrane_bgp_report_age_seconds{host=n1} = %g, %v", age, ok)
	}
	// The counters that were there before.
	if v, _ := f.Value("terrane_store_other_writes_total"); v < 4 { // 2 reports, 2 BGP reports
		t.Errorf("terrane_store_other_writes_total = %g, want at least 4", v)
	}
	want("terrane_state_load_error", 0)
	if v, _ := f.Value("terrane_store_revision"); v < 1 {
		t.Errorf("terrane_store_revision = %g", v)
	}
	if f["go_goroutines"] == nil || f["process_cpu_seconds_total"] == nil {
		t.Error("no go_* or process_* metrics")
	}
}
