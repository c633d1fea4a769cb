package aws

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"

	"github.com/terrane-net/terrane/internal/cloud/ec2fake"
	"github.com/terrane-net/terrane/internal/cloud/vpc"
)

// start serves a fake with one table and returns an adapter pointed at it
// over real HTTP.
func start(t *testing.T, opts ec2fake.Options) (*EC2, *ec2fake.Fake) {
	t.Helper()
	f := ec2fake.New(opts)
	f.AddRouteTable("rtb-1", netip.MustParsePrefix("172.31.0.0/16"), netip.MustParsePrefix("2600:1f18::/56"))
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	e, err := New(context.Background(), Options{Region: "us-east-1", Endpoint: srv.URL, AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	return e, f
}

func TestRoutesRoundTrip(t *testing.T) {
	var changes []ec2fake.Change
	e, f := start(t, ec2fake.Options{OnChange: func(c ec2fake.Change) { changes = append(changes, c) }})
	ctx := context.Background()
	p4, p6 := netip.MustParsePrefix("10.30.0.0/28"), netip.MustParsePrefix("fd00:30::/112")
	for _, step := range []struct {
		name string
		err  error
	}{
		{"create v4", e.CreateRoute(ctx, "rtb-1", p4, "i-0aaa")},
		{"create v6", e.CreateRoute(ctx, "rtb-1", p6, "i-0bbb")},
		{"replace v4", e.ReplaceRoute(ctx, "rtb-1", p4, "i-0ccc")},
		{"src/dst", e.DisableSourceDestCheck(ctx, "i-0ccc")},
	} {
		if step.err != nil {
			t.Fatalf("%s: %v", step.name, step.err)
		}
	}
	routes, err := e.RouteTable(ctx, "rtb-1")
	if err != nil {
		t.Fatal(err)
	}
	want := []vpc.CloudRoute{
		{Dst: p4, Instance: "i-0ccc", Origin: "CreateRoute"},
		{Dst: netip.MustParsePrefix("172.31.0.0/16"), Target: "local", Origin: "CreateRouteTable"},
		{Dst: netip.MustParsePrefix("2600:1f18::/56"), Target: "local", Origin: "CreateRouteTable"},
		{Dst: p6, Instance: "i-0bbb", Origin: "CreateRoute"},
	}
	if !slices.Equal(routes, want) {
		t.Fatalf("routes:\n got %+v\nwant %+v", routes, want)
	}
	if v, known := f.SourceDestCheck("i-0ccc"); !known || v {
		t.Errorf("source/dest check of i-0ccc = %v (known %v), want false", v, known)
	}
	if err := e.DeleteRoute(ctx, "rtb-1", p6); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.RouteTable("rtb-1"); len(got) != 3 {
		t.Errorf("after delete: %d routes, want 3", len(got))
	}
	kinds := []ec2fake.ChangeKind{}
	for _, c := range changes {
		kinds = append(kinds, c.Kind)
	}
	wantKinds := []ec2fake.ChangeKind{ec2fake.RouteCreated, ec2fake.RouteCreated, ec2fake.RouteReplaced, ec2fake.AttributeChange, ec2fake.RouteDeleted}
	if !slices.Equal(kinds, wantKinds) {
		t.Errorf("hook saw %v, want %v", kinds, wantKinds)
	}
	if changes[2].Old.Instance != "i-0aaa" || changes[2].New.Instance != "i-0ccc" {
		t.Errorf("replace change = %+v", changes[2])
	}
	calls := f.Calls()
	if calls["CreateRoute"] != 2 || calls["ReplaceRoute"] != 1 || calls["DeleteRoute"] != 1 || calls["DescribeRouteTables"] != 1 || calls["ModifyInstanceAttribute"] != 1 {
		t.Errorf("calls = %v", calls)
	}
}

func TestErrorsMapped(t *testing.T) {
	e, f := start(t, ec2fake.Options{RouteLimit: 1})
	ctx := context.Background()
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	if err := e.CreateRoute(ctx, "rtb-1", p("10.0.0.0/24"), "i-1"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
		want error // nil: an error that is none of vpc's
	}{
		{"route limit", func() error { return e.CreateRoute(ctx, "rtb-1", p("10.0.1.0/24"), "i-1") }, vpc.ErrRouteLimit},
		{"unknown table", func() error { _, err := e.RouteTable(ctx, "rtb-nope"); return err }, vpc.ErrNotFound},
		{"delete missing route", func() error { return e.DeleteRoute(ctx, "rtb-1", p("10.9.0.0/24")) }, vpc.ErrNotFound},
		{"route exists", func() error { return e.CreateRoute(ctx, "rtb-1", p("10.0.0.0/24"), "i-1") }, nil},
		{"throttled", func() error { f.ThrottleNext(1); return e.DeleteRoute(ctx, "rtb-1", p("10.0.0.0/24")) }, vpc.ErrThrottled},
		{"injected", func() error {
			f.FailNext("ModifyInstanceAttribute", "UnauthorizedOperation", "You are not authorized", 403)
			return e.DisableSourceDestCheck(ctx, "i-1")
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil {
				t.Fatal("no error")
			}
			for _, k := range []error{vpc.ErrRouteLimit, vpc.ErrNotFound, vpc.ErrThrottled} {
				if errors.Is(err, k) != (k == tt.want) {
					t.Errorf("errors.Is(%v, %v) = %v", err, k, !(k == tt.want))
				}
			}
			t.Log(err)
		})
	}
	// One DeleteRoute for the missing route, one for the throttled call:
	// the SDK's own retryer is off.
	if n := f.Calls()["DeleteRoute"]; n != 2 {
		t.Errorf("DeleteRoute called %d times, want 2 (no SDK retries)", n)
	}
}
