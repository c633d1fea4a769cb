package main

import (
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client/clienttest"
)

// TestCtlVPCNotConfigured: against a server without --vpc-config, the
// table output says how to configure it and the JSON says configured false.
func TestCtlVPCNotConfigured(t *testing.T) {
	isolate(t)
	srv := clienttest.Start(t)
	l := srv.PKI
	a := []string{"--server", srv.URL, "--ca", l.CA.Cert, "--cert", l.Admin.Cert, "--key", l.Admin.Key}
	out := mustCtl(t, append(a, "vpc")...)
	if !strings.Contains(out, "not configured") || !strings.Contains(out, "--vpc-config") {
		t.Fatalf("ctl vpc:\n%s", out)
	}
	if doc := jsonOf(t, mustCtl(t, append(a, "vpc", "-o", "json")...)); doc["configured"] != false {
		t.Fatalf("ctl vpc -o json: configured = %v, want false", doc["configured"])
	}
}

// TestPrintVPC: the table shows each table's routes against the budget,
// what the core needs (flagged over budget), the direct share, the
// instances, and every problem, route limit and error by table.
func TestPrintVPC(t *testing.T) {
	st := &api.VPCStatus{Configured: true, Active: true, Holder: "server-1", Revision: 42, Tables: []api.VPCTableStatus{
		{ID: "rtb-a", Groups: []string{"us-east-1a"}, Instances: 8, Checked: 8,
			Families: []api.VPCFamilyStatus{{Family: "ipv4", Routes: 7, Budget: 8, Needed: 7, Fits: true, DirectShare: 0.25}}},
		{ID: "rtb-b", Instances: 4, Checked: 3, RouteLimitHit: true, LastError: "throttled", Problems: []string{"no healthy host in group us-east-1b/subnet-2"},
			Families: []api.VPCFamilyStatus{{Family: "ipv4", Routes: 5, Budget: 5, Needed: 9, Fits: false, DirectShare: 1}}},
	}}
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	printVPC(tw, st)
	tw.Flush()
	out := b.String()
	for _, want := range []string{
		"active (lease holder server-1)",
		"rtb-a  ipv4    7       8       7",
		"25.00%",
		"8/8",
		"us-east-1a",
		"9 (over budget)",
		"3/4",
		"all vpc groups",
		"rtb-b: the cloud refused routes for the table's route limit (RouteLimitExceeded)",
		"rtb-b: throttled",
		"rtb-b: no healthy host in group us-east-1b/subnet-2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
