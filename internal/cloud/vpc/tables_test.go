package vpc_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/cloud/aws"
	"github.com/terrane-net/terrane/internal/cloud/ec2fake"
	"github.com/terrane-net/terrane/internal/cloud/vpc"
)

// TestSeveralRouteTables: one private table per zone, as AWS set-ups
// usually have. One pass fills each table with routes for its own zone's
// hosts only, each within its own budget, every block of a zone's hosts
// covered by its table, and a second pass changes nothing.
func TestSeveralRouteTables(t *testing.T) {
	a, _ := clusterState(t, 60, 2, 50)
	f := ec2fake.New(ec2fake.Options{RouteLimit: 50})
	zones := map[string]string{"rtb-a": "us-east-1a", "rtb-b": "us-east-1b", "rtb-c": "us-east-1c"}
	var specs []vpc.TableSpec
	for _, id := range []string{"rtb-a", "rtb-b", "rtb-c"} {
		f.AddRouteTable(id, netip.MustParsePrefix("172.31.0.0/16"))
		specs = append(specs, vpc.TableSpec{ID: id, Groups: []string{zones[id]}, Budget4: 12, Budget6: 12})
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cloud, err := aws.New(context.Background(), aws.Options{Region: "us-east-1", Endpoint: srv.URL, AccessKeyID: "AKIDTEST", SecretAccessKey: "test"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &vpc.Config{Provider: "aws", Region: "us-east-1", InstanceLabel: vpc.DefaultInstanceLabel, Interval: time.Second, Tables: specs}
	rec := vpc.New(cfg, cloud, slog.New(slog.NewTextHandler(io.Discard, nil)))
	snap := vpc.SnapshotFrom(a, vpc.DefaultInstanceLabel)
	if err := rec.Reconcile(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	for id, zone := range zones {
		// The zone's hosts' blocks, and the prefixes of its groups.
		var blocks []netip.Prefix
		for _, n := range a.Topology().Networks {
			for _, b := range a.Blocks(n.Name) {
				if strings.HasPrefix(b.Group, zone+"/") {
					blocks = append(blocks, b.Prefix)
				}
			}
		}
		zonePrefixes := a.GroupPrefixes(a.Topology().Networks[0].Name)[zone]
		table, ok := f.RouteTable(id)
		if !ok {
			t.Fatalf("table %s is gone", id)
		}
		var ours []netip.Prefix
		for _, r := range table {
			if r.Origin == "CreateRoute" {
				ours = append(ours, r.Dst)
			}
		}
		if len(ours) == 0 || len(ours) > 12 {
			t.Fatalf("table %s (%s): %d routes, want 1 to its budget 12: %v", id, zone, len(ours), ours)
		}
		for _, d := range ours {
			inZone := false
			for _, z := range zonePrefixes {
				inZone = inZone || z.Contains(d.Addr()) && z.Bits() <= d.Bits()
			}
			if !inZone {
				t.Errorf("table %s routes %s, outside zone %s (%v)", id, d, zone, zonePrefixes)
			}
		}
		for _, b := range blocks {
			covered := false
			for _, d := range ours {
				covered = covered || d.Contains(b.Addr()) && d.Bits() <= b.Bits()
			}
			if !covered {
				t.Errorf("table %s leaves block %s of zone %s unrouted", id, b, zone)
			}
		}
	}
	f.ResetCalls()
	if err := rec.Reconcile(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	for action, n := range f.Calls() {
		if action != "DescribeRouteTables" && n > 0 {
			t.Errorf("second pass called %s %d times, want only describes", action, n)
		}
	}
}
