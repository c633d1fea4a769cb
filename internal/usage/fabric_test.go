package usage

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/routing"
	"github.com/terrane-net/terrane/internal/topology"
)

// TestGroupsAndFabricAgreeWithDescribe: on the shipped examples with
// random hosts and endpoints, Groups is Describe's group rows and Fabric
// its ToR and VPC counts, every ToR (the largest is RouteReport.BGP), so
// the server's /metrics and terrane plan cannot disagree.
func TestGroupsAndFabricAgreeWithDescribe(t *testing.T) {
	labels := map[string]func(r *rand.Rand) map[string]string{
		"l3-fabric-4rack.yaml": func(r *rand.Rand) map[string]string { return map[string]string{"rack": fmt.Sprint(1 + r.IntN(4))} },
		"aws-3zone.yaml": func(r *rand.Rand) map[string]string {
			return map[string]string{"topology.kubernetes.io/zone": "us-east-1" + string(rune('a'+r.IntN(3))), "terrane.io/subnet": fmt.Sprint(1 + r.IntN(8))}
		},
	}
	for file, label := range labels {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("..", "..", "examples", file))
			if err != nil {
				t.Fatal(err)
			}
			top, err := topology.Load(data)
			if err != nil {
				t.Fatal(err)
			}
			budgets := ipam.Budgets{VPC: 50, BGP: 100}
			a, _, err := ipam.New(top, ipam.Options{Budgets: budgets})
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(1, 2))
			var hosts []string
			for i := range 30 {
				name := fmt.Sprintf("h%d", i)
				if _, err := a.AddHost(ipam.HostSpec{Name: name, IP: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), Labels: label(r)}); err != nil {
					t.Fatal(err)
				}
				hosts = append(hosts, name)
			}
			n := top.Networks[0]
			for k := range 300 {
				if _, _, err := a.AllocateEndpoint(ipam.EndpointRequest{ID: fmt.Sprint(k), Host: hosts[r.IntN(len(hosts))], Network: n.Name, Namespace: "default"}); err != nil {
					t.Fatal(err)
				}
			}
			d, err := Describe(a, n, budgets)
			if err != nil {
				t.Fatal(err)
			}
			groups := Groups(a, n)
			if len(groups) != len(d.Groups) {
				t.Fatalf("%d groups, Describe %d", len(groups), len(d.Groups))
			}
			for i, g := range groups {
				dg := d.Groups[i]
				if g.Path != dg.Path || g.Mode != dg.Mode || !slices.Equal(g.Prefixes, dg.Prefixes) || g.Assignable != dg.Assignable ||
					g.Hosts != dg.Hosts || g.Blocks != dg.Blocks || g.Allocated != dg.Allocated {
					t.Errorf("group %s: %+v, Describe %+v", g.Path, g, dg)
				}
			}
			f := Fabric(a, n, budgets)
			if !slices.Equal(f.ToRs, d.Routes.ToRs) {
				t.Errorf("ToRs %+v, Describe's %+v", f.ToRs, d.Routes.ToRs)
			}
			// Each ToR's own optimum, never above what it learns (the
			// routes are minimal), and the network's is their largest.
			in, most := RoutingInput(a, n), 0
			for _, tr := range f.ToRs {
				if want := routing.ToROptimum(in, tr.Group); tr.Optimum != want || tr.Optimum > tr.Routes {
					t.Errorf("ToR of %s: optimum %d, routes %d; want optimum %d, at most the routes", tr.Group, tr.Optimum, tr.Routes, want)
				}
				most = max(most, tr.Optimum)
			}
			if _, want := routing.MaxToROptimum(in); most != want || d.Routes.BGPOptimal != want {
				t.Errorf("largest ToR optimum %d, Describe's %d, want %d", most, d.Routes.BGPOptimal, want)
			}
			most = 0
			for _, tr := range f.ToRs {
				most = max(most, tr.Routes)
			}
			if most != d.Routes.BGP || f.VPCRoutes != d.Routes.VPC || f.VPCDirectShare != d.Routes.VPCDirectShare || f.BGPBudget != 100 || f.VPCBudget != 50 {
				t.Errorf("fabric %+v, Describe's routes %+v", f, d.Routes)
			}
			if d.Routes.BGP+d.Routes.VPC == 0 {
				t.Errorf("%s: no ToR or VPC routes to compare", file)
			}
		})
	}
}
