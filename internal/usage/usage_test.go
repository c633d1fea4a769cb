package usage

import (
	"net/netip"
	"testing"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/topology"
)

// TestDescribeCountsEveryAddress: the report counts the server's endpoints
// and the addresses the agents report alike, per network and per group.
func TestDescribeCountsEveryAddress(t *testing.T) {
	top, err := topology.Load([]byte(`
networks:
  - {name: pods, cidr: 10.0.0.0/24, blockSize: 28, default: true}
topologies:
  - networks: [pods]
    groups:
      - {name: rack, routing: l2}
`))
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := ipam.New(top, ipam.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddHost(ipam.HostSpec{Name: "h1", IP: netip.MustParseAddr("192.0.2.1")}); err != nil {
		t.Fatal(err)
	}
	block, _, err := a.ClaimBlock("h1", "pods")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.AllocateEndpoint(ipam.EndpointRequest{ID: "vm-1", Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	var pods []ipam.ReportedAddress
	for i, addr := 0, block.Addr(); i < 3; i, addr = i+1, addr.Next() {
		pods = append(pods, ipam.ReportedAddress{Network: "pods", Addr: addr, Block: block, Attachment: "c/eth0"})
	}
	a.SetReports([]ipam.HostReport{{Host: "h1", Addresses: pods}})
	nr, err := Describe(a, top.Network("pods"), ipam.Budgets{})
	if err != nil {
		t.Fatal(err)
	}
	if nr.Allocated != 4 || nr.Blocks != 2 || nr.Hosts != 1 || nr.Capacity != 256 {
		t.Errorf("network report %+v: want 4 allocated (3 pods, 1 VM port) in 2 blocks of 1 host, capacity 256", nr)
	}
	if len(nr.Groups) != 1 || nr.Groups[0].Allocated != 4 || nr.Groups[0].Blocks != 2 {
		t.Errorf("group report %+v", nr.Groups)
	}
	if nr.UsableShare != 4.0/256 {
		t.Errorf("usable share %v", nr.UsableShare)
	}
}

// TestDescribeToRRoutesPerGroup: each bgp leaf group with hosts says how
// many routes its ToR learns, the network's bgp figure is the largest of
// them, and a group without a ToR says nothing.
func TestDescribeToRRoutesPerGroup(t *testing.T) {
	top, err := topology.Load([]byte(`
networks:
  - {name: fabric, cidr: 10.20.0.0/16, blockSize: 27}
topologies:
  - networks: [fabric]
    groups:
      - {name: rack-1, routing: bgp, advertise: blocks, assignment: {matchLabels: {rack: "1"}}}
      - {name: rack-2, routing: bgp, advertise: group, assignment: {matchLabels: {rack: "2"}}}
      - {name: rack-3, routing: bgp, assignment: {matchLabels: {rack: "3"}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := ipam.New(top, ipam.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hosts := []struct{ name, rack, ip string }{{"a1", "1", "192.0.2.1"}, {"a2", "1", "192.0.2.2"}, {"b1", "2", "192.0.2.3"}}
	for _, h := range hosts {
		if _, err := a.AddHost(ipam.HostSpec{Name: h.name, IP: netip.MustParseAddr(h.ip), Labels: map[string]string{"rack": h.rack}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []string{"a1", "a2", "a1", "b1"} {
		if _, _, err := a.ClaimBlock(h, "fabric"); err != nil {
			t.Fatal(err)
		}
	}
	nr, err := Describe(a, top.Network("fabric"), ipam.Budgets{BGP: 7})
	if err != nil {
		t.Fatal(err)
	}
	tor := map[string]int{}
	for _, g := range nr.Groups {
		if g.ToRRoutes != nil {
			tor[g.Path] = *g.ToRRoutes
		}
	}
	if len(tor) != 2 || tor["rack-1"] < 1 || tor["rack-2"] != 1 {
		t.Fatalf("tor routes per group %v: want rack-1 (blocks of two hosts) and rack-2 (its group's prefix, 1), nothing for rack-3 (no hosts)", tor)
	}
	if nr.Routes.BGP != max(tor["rack-1"], tor["rack-2"]) || nr.Routes.BGPBudget != 7 {
		t.Errorf("network bgp %d budget %d: want the largest per-group figure of %v and budget 7", nr.Routes.BGP, nr.Routes.BGPBudget, tor)
	}
}
