package usage

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/topology"
)

// TestVPCFloorBoundsTheTable: the allocator's VPC floor (the optimum over
// the group prefixes as if full) is never below the routing core's optimum
// for the blocks, so a state the allocator lets grow within the budget
// always has a table that fits it. Random hosts and skewed allocations on
// the shipped aws-3zone example, checked every 400 endpoints and at the
// end.
func TestVPCFloorBoundsTheTable(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "aws-3zone.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	top, err := topology.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	n := top.Networks[0]
	for seed := range uint64(3) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 0xf100))
			a, _, err := ipam.New(top, ipam.Options{Budgets: ipam.Budgets{VPC: 50}})
			if err != nil {
				t.Fatal(err)
			}
			var hosts []string
			for i := range 24 + r.IntN(48) {
				name := fmt.Sprintf("h%d", i)
				labels := map[string]string{
					"topology.kubernetes.io/zone": "us-east-1" + string(rune('a'+r.IntN(3))),
					"terrane.io/subnet":           fmt.Sprint(1 + r.IntN(8)),
				}
				if _, err := a.AddHost(ipam.HostSpec{Name: name, IP: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), Labels: labels}); err != nil {
					t.Fatal(err)
				}
				hosts = append(hosts, name)
			}
			busy := hosts[:1+r.IntN(4)]
			blocks := 0
			for k := 0; ; k++ {
				h := hosts[r.IntN(len(hosts))]
				if r.IntN(10) < 8 {
					h = busy[r.IntN(len(busy))]
				}
				_, _, err := a.AllocateEndpoint(ipam.EndpointRequest{ID: fmt.Sprint(k), Host: h, Network: n.Name, Namespace: "default"})
				if err != nil {
					break // the budget, or the space, ends it
				}
				if k%400 == 399 {
					blocks = len(a.Blocks(n.Name))
					floor, _ := a.RouteFloors(n.Name)
					if opt := routing.MinVPCRoutes(blocksOnly(a, n)); opt > floor {
						t.Fatalf("after %d endpoints in %d blocks: the table needs %d routes, the allocator's floor says %d", k+1, blocks, opt, floor)
					}
				}
			}
			floor, _ := a.RouteFloors(n.Name)
			opt := routing.MinVPCRoutes(blocksOnly(a, n))
			if opt > floor || floor > 50 {
				t.Fatalf("at the end: table optimum %d, floor %d, budget 50", opt, floor)
			}
			t.Logf("%d hosts, %d blocks, table optimum %d, floor %d", len(hosts), len(a.Blocks(n.Name)), opt, floor)
		})
	}
}

// blocksOnly is RoutingInput without the endpoints, which the optimum does
// not need.
func blocksOnly(a *ipam.Allocator, n *topology.Network) routing.Input {
	return routing.InputFrom(n, a.Hosts(), a.Blocks(n.Name), a.GroupPrefixes(n.Name), nil)
}
