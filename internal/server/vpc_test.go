package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"testing"

	"github.com/terrane-net/terrane/internal/cloud/aws"
	"github.com/terrane-net/terrane/internal/cloud/ec2fake"
	"github.com/terrane-net/terrane/internal/cloud/vpc"
	"github.com/terrane-net/terrane/internal/metrics"
)

const vpcTopology = `
networks:
  - {name: pods, cidr: 10.30.0.0/16, blockSize: 28, default: true}
topologies:
  - networks: [pods]
    groups:
      - {name: zone-a, routing: vpc, assignment: {matchLabels: {zone: a}}}
      - {name: zone-b, routing: vpc, assignment: {matchLabels: {zone: b}}}
`

// TestServerRunsVPCReconciler: a server started with a VPC reconciler
// keeps the fake EC2's table equal to the state — routes appear when
// blocks are claimed, go when released — and reports it on GET /v1/vpc
// and /metrics.
func TestServerRunsVPCReconciler(t *testing.T) {
	var mu sync.Mutex
	var changes []ec2fake.Change
	fake := ec2fake.New(ec2fake.Options{OnChange: func(c ec2fake.Change) { mu.Lock(); changes = append(changes, c); mu.Unlock() }})
	fake.AddRouteTable("rtb-0a1", netip.MustParsePrefix("172.31.0.0/16"))
	ec2srv, err := ec2fake.Start(fake, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ec2srv.Close()
	cfg, err := vpc.ParseConfig([]byte("provider: aws\nregion: us-east-1\nendpoint: " + ec2srv.URL + "\ninterval: 1s\nrouteTables:\n  - {id: rtb-0a1, budget: 10}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cloud, err := aws.New(context.Background(), aws.Options{Region: cfg.Region, Endpoint: cfg.Endpoint, AccessKeyID: "AKIDTEST", SecretAccessKey: "test"})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rec := vpc.New(cfg, cloud, log)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: "127.0.0.1:0", Store: openBolt(t, t.TempDir()), Insecure: true, Log: log, VPC: rec, Ready: func(a string) { ready <- a }})
	}()
	s := &testServer{t: t, url: "http://" + <-ready}
	defer func() { cancel(); <-done }()

	if code, body := s.call("", "POST", "/v1/topology", map[string]any{"topology": vpcTopology}); code != http.StatusOK {
		t.Fatalf("apply: %d %v", code, body)
	}
	for _, h := range []struct{ name, zone, inst string }{{"a1", "a", "i-0a1"}, {"b1", "b", "i-0b1"}} {
		if code, body := s.call("", "PUT", "/v1/hosts/"+h.name, map[string]any{"ip": "172.31.0." + h.inst[4:], "labels": map[string]string{"zone": h.zone, vpc.DefaultInstanceLabel: h.inst}}); code != http.StatusOK {
			t.Fatalf("register %s: %d %v", h.name, code, body)
		}
		if code, body := s.call("", "POST", "/v1/hosts/"+h.name+"/blocks", map[string]any{"network": "pods"}); code != http.StatusCreated {
			t.Fatalf("claim on %s: %d %v", h.name, code, body)
		}
	}
	routes := func() []ec2fake.Route {
		rs, _ := fake.RouteTable("rtb-0a1")
		var own []ec2fake.Route
		for _, r := range rs {
			if r.Instance != "" {
				own = append(own, r)
			}
		}
		return own
	}
	waitFor(t, func() bool { return len(routes()) == 2 })
	for _, r := range routes() {
		if v, known := fake.SourceDestCheck(r.Instance); !known || v {
			t.Errorf("source/dest check of %s still on", r.Instance)
		}
	}
	waitFor(t, func() bool {
		_, body := s.call("", "GET", "/v1/vpc", nil)
		return body["active"] == true && body["last_error"] == nil && len(body["tables"].([]any)) == 1
	})
	_, body := s.call("", "GET", "/v1/vpc", nil)
	fam := body["tables"].([]any)[0].(map[string]any)["families"].([]any)[0].(map[string]any)
	if fam["routes"] != 2.0 || fam["budget"] != 10.0 || fam["direct_share"] != 1.0 {
		t.Errorf("status family = %v", fam)
	}
	// A released block's route goes, on the state change, well before
	// the 1 s period would have it.
	_, blocks := s.call("", "GET", "/v1/blocks", nil)
	b := blocks["blocks"].(map[string]any)["pods"].([]any)[0].(map[string]any)
	p := netip.MustParsePrefix(b["prefix"].(string))
	if code, body := s.call("", "DELETE", "/v1/hosts/"+b["host"].(string)+"/blocks/pods/"+p.Addr().String()+"/28", nil); code != http.StatusOK {
		t.Fatalf("release: %d %v", code, body)
	}
	waitFor(t, func() bool { return len(routes()) == 1 })
	req, _ := http.NewRequest("GET", s.url+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	f, err := metrics.Parse(bytes.NewReader(m))
	if err != nil {
		t.Fatal(err)
	}
	if bad := metrics.Verify(f, "server"); len(bad) > 0 {
		t.Errorf("the exposition differs from the catalogue:\n%v", bad)
	}
	for _, name := range []string{"terrane_vpc_passes_total", "terrane_vpc_pass_errors_total", "terrane_vpc_pass_seconds", "terrane_vpc_api_calls_total",
		"terrane_vpc_throttled_total", "terrane_vpc_route_limit_exceeded_total", "terrane_vpc_routes", "terrane_vpc_over_budget", "terrane_vpc_direct_share"} {
		if f[name] == nil {
			t.Errorf("metrics lack %s", name)
		}
	}
	if v, _ := f.Value("terrane_vpc_active"); v != 1 {
		t.Errorf("terrane_vpc_active = %g, want 1", v)
	}
	if v, _ := f.Value("terrane_vpc_route_budget", "table", "rtb-0a1", "family", "ipv4"); v != 10 {
		t.Errorf("terrane_vpc_route_budget{table=rtb-0a1} = %g, want 10", v)
	}
	if v, _ := f.Value("terrane_vpc_routes", "table", "rtb-0a1", "family", "ipv4"); v != float64(len(routes())) {
		t.Errorf("terrane_vpc_routes{table=rtb-0a1} = %g, the table holds %d", v, len(routes()))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) < 5 { // 2 attribute changes, 2 creates, 1 delete
		t.Errorf("hook saw %d changes: %v", len(changes), changes)
	}
}

func TestVPCStatusUnconfigured(t *testing.T) {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	code, body := s.call(n1Token, "GET", "/v1/vpc", nil)
	if code != http.StatusOK || body["configured"] != false {
		t.Errorf("GET /v1/vpc = %d %v", code, body)
	}
}
