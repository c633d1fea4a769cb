package vpc_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/cloud/aws"
	"github.com/terrane-net/terrane/internal/cloud/ec2fake"
	"github.com/terrane-net/terrane/internal/cloud/vpc"
	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/topology"
	"github.com/terrane-net/terrane/internal/usage"
)

// clusterState builds the shipped aws-3zone topology with hosts spread
// over its 3 zones × 8 subnets, each labelled with an instance ID, and
// podsPerHost endpoints on every host (the first hosts' subnet takes
// skew of them, as `terrane plan --skew` does).
func clusterState(t testing.TB, hosts, podsPerHost int, budget int) (*ipam.Allocator, *topology.Network) {
	t.Helper()
	src, err := os.ReadFile("../../../examples/aws-3zone.yaml")
	if err != nil {
		t.Fatal(err)
	}
	topo, err := topology.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	a, _, err := ipam.New(topo, ipam.Options{Budgets: ipam.Budgets{VPC: budget}})
	if err != nil {
		t.Fatal(err)
	}
	zones := []string{"us-east-1a", "us-east-1b", "us-east-1c"}
	for i := range hosts {
		name := fmt.Sprintf("h%04d", i)
		labels := map[string]string{
			"topology.kubernetes.io/zone": zones[i%3],
			"terrane.io/subnet":           fmt.Sprint(1 + (i/3)%8),
			vpc.DefaultInstanceLabel:      fmt.Sprintf("i-%08x", i),
		}
		ip := netip.AddrFrom4([4]byte{172, 31, byte(i >> 8), byte(i)})
		if _, err := a.AddHost(ipam.HostSpec{Name: name, IP: ip, Labels: labels}); err != nil {
			t.Fatal(err)
		}
	}
	n := topo.Networks[0]
	for i := range hosts * podsPerHost {
		host := fmt.Sprintf("h%04d", i%hosts)
		if _, _, err := a.AllocateEndpoint(ipam.EndpointRequest{ID: fmt.Sprint(i), Host: host, Network: n.Name, Namespace: "default"}); err != nil {
			t.Fatalf("allocate on %s: %v", host, err)
		}
	}
	return a, n
}

func newFakeReconciler(t testing.TB, budget int, groups ...string) (*vpc.Reconciler, *ec2fake.Fake) {
	t.Helper()
	f := ec2fake.New(ec2fake.Options{RouteLimit: budget})
	f.AddRouteTable("rtb-0a1", netip.MustParsePrefix("172.31.0.0/16"))
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cloud, err := aws.New(context.Background(), aws.Options{Region: "us-east-1", Endpoint: srv.URL, AccessKeyID: "AKIDTEST", SecretAccessKey: "test"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &vpc.Config{Provider: "aws", Region: "us-east-1", InstanceLabel: vpc.DefaultInstanceLabel, Interval: time.Second,
		Tables: []vpc.TableSpec{{ID: "rtb-0a1", Groups: groups, Budget4: budget, Budget6: budget}}}
	return vpc.New(cfg, cloud, slog.New(slog.NewTextHandler(io.Discard, nil))), f
}

// TestPlanAndReconcilerAgree: for the same state, `terrane plan`'s report
// (usage.Describe, what the planner and the server's utilisation print)
// and the reconciler against the fake EC2 give the same VPC route count
// and direct share, and the fake's table holds exactly that many routes.
func TestPlanAndReconcilerAgree(t *testing.T) {
	for _, tc := range []struct{ hosts, pods, budget int }{
		{10, 2, 50},  // every host direct
		{60, 1, 50},  // over the budget per host: some groups aggregated
		{120, 3, 30}, // a small budget: just above one route per subnet (24)
		{30, 0, 50},  // no endpoints: direct share 1
	} {
		t.Run(fmt.Sprintf("%dhosts-%dpods-budget%d", tc.hosts, tc.pods, tc.budget), func(t *testing.T) {
			a, n := clusterState(t, tc.hosts, tc.pods, tc.budget)
			rep, err := usage.Describe(a, n, ipam.Budgets{VPC: tc.budget})
			if err != nil {
				t.Fatal(err)
			}
			rec, f := newFakeReconciler(t, tc.budget)
			if err := rec.Reconcile(context.Background(), vpc.SnapshotFrom(a, vpc.DefaultInstanceLabel)); err != nil {
				t.Fatal(err)
			}
			fam := rec.Status().Tables[0].Families[0]
			table, _ := f.RouteTable("rtb-0a1")
			if fam.Routes != rep.Routes.VPC || fam.Needed != rep.Routes.VPC || len(table)-1 != rep.Routes.VPC {
				t.Errorf("routes: plan %d, reconciler %d (needed %d), fake table %d", rep.Routes.VPC, fam.Routes, fam.Needed, len(table)-1)
			}
			if fam.DirectShare != rep.Routes.VPCDirectShare {
				t.Errorf("direct share: plan %v, reconciler %v", rep.Routes.VPCDirectShare, fam.DirectShare)
			}
			if fam.Routes > tc.budget {
				t.Errorf("%d routes over the budget of %d", fam.Routes, tc.budget)
			}
			t.Logf("%d hosts: %d routes (budget %d), direct share %.3f, block direct share %.3f", tc.hosts, fam.Routes, tc.budget, fam.DirectShare, fam.DirectBlockShare)
		})
	}
}

// TestMeasure1000Hosts prints the numbers in docs/benchmarks.md ("VPC
// route tables"). Run with TERRANE_VPC_MEASURE=1.
func TestMeasure1000Hosts(t *testing.T) {
	if os.Getenv("TERRANE_VPC_MEASURE") == "" {
		t.Skip("set TERRANE_VPC_MEASURE=1 to measure")
	}
	const hosts, budget = 1000, 50
	for _, pods := range []int{1, 20} {
		start := time.Now()
		a, n := clusterState(t, hosts, pods, budget)
		built := time.Since(start)
		rep, err := usage.Describe(a, n, ipam.Budgets{VPC: budget})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("planner: %d hosts, %d pods each: %d blocks, VPC %d routes (budget %d, floor %d), direct share %.3f (state built in %v)",
			hosts, pods, rep.Blocks, rep.Routes.VPC, budget, rep.Routes.VPCFloor, rep.Routes.VPCDirectShare, built.Round(time.Millisecond))
		rec, f := newFakeReconciler(t, budget)
		snap := vpc.SnapshotFrom(a, vpc.DefaultInstanceLabel)
		for _, pass := range []string{"first (empty table)", "second (no change)"} {
			f.ResetCalls()
			start := time.Now()
			if err := rec.Reconcile(context.Background(), snap); err != nil {
				t.Fatal(err)
			}
			fam := rec.Status().Tables[0].Families[0]
			t.Logf("reconciler %s pass: %v, calls %v, routes %d, direct share %.3f, block direct share %.3f",
				pass, time.Since(start).Round(time.Millisecond), f.Calls(), fam.Routes, fam.DirectShare, fam.DirectBlockShare)
		}
		// Failover: every host of the first aggregate's group but one
		// turns unhealthy.
		snap.Healthy = map[string]bool{}
		for h := range snap.Instances {
			snap.Healthy[h] = true
		}
		table, _ := f.RouteTable("rtb-0a1")
		for _, r := range table {
			if r.Instance != "" {
				for h, i := range snap.Instances {
					if i == r.Instance {
						delete(snap.Healthy, h)
					}
				}
			}
		}
		f.ResetCalls()
		start = time.Now()
		if err := rec.Reconcile(context.Background(), snap); err != nil {
			t.Fatal(err)
		}
		t.Logf("reconciler failover pass (every route target unhealthy): %v, calls %v", time.Since(start).Round(time.Millisecond), f.Calls())
	}
}
