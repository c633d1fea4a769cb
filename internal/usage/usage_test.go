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
