package routing

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/terrane-net/terrane/internal/netx"
	"github.com/terrane-net/terrane/internal/topology"
)

// cloudInput is 1000 vpc hosts in 3 zones of 8 subnets each, every host
// with two /26 blocks that do not merge and ten endpoints.
func cloudInput() Input {
	const zones, subnets, hosts = 3, 8, 1000
	vpc := topology.ModeVPC
	network := netip.MustParsePrefix("10.0.0.0/12")
	var in Input
	var leaves []Group
	for z := range uint64(zones) {
		zp, _ := netx.Nth(network, 14, z)
		zone := Group{Path: fmt.Sprintf("zone-%d", z), Mode: vpc, Prefixes: []netip.Prefix{zp}}
		in.Groups = append(in.Groups, zone)
		for s := range uint64(subnets) {
			sp, _ := netx.Nth(zp, 17, s)
			g := Group{Path: fmt.Sprintf("%s/subnet-%d", zone.Path, s), Parent: zone.Path, Mode: vpc, Prefixes: []netip.Prefix{sp}}
			in.Groups = append(in.Groups, g)
			leaves = append(leaves, g)
		}
	}
	for i := range hosts {
		leaf := leaves[i%len(leaves)]
		slot := uint64(i / len(leaves))
		h := Host{Name: fmt.Sprintf("node-%04d", i), IP: netx.AddOffset(netip.MustParseAddr("172.16.0.0"), uint64(i), 0), Group: leaf.Path, Mode: vpc}
		for _, k := range []uint64{4 * slot, 4*slot + 2} {
			b, _ := netx.Nth(leaf.Prefixes[0], 26, k)
			h.Blocks = append(h.Blocks, b)
			for e := range uint64(5) {
				h.Endpoints = append(h.Endpoints, netx.AddOffset(b.Addr(), e+1, 0))
			}
		}
		in.Hosts = append(in.Hosts, h)
	}
	return in
}

func BenchmarkVPC(b *testing.B) {
	in := cloudInput()
	res := VPC(in, 50)
	if !res.Fits || len(res.Routes) > 50 {
		b.Fatalf("VPC(budget 50) = %d routes, fits %v", len(res.Routes), res.Fits)
	}
	b.ReportMetric(float64(len(res.Routes)), "routes")
	b.ResetTimer()
	for b.Loop() {
		VPC(in, 50)
	}
}

func BenchmarkHostRoutes(b *testing.B) {
	in := cloudInput()
	for i := range in.Hosts {
		in.Hosts[i].Segment = in.Hosts[i].Group
	}
	for b.Loop() {
		if _, err := HostRoutes(in, "node-0500"); err != nil {
			b.Fatal(err)
		}
	}
}
