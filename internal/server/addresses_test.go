package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/ipam"
)

// TestAddressReports: an agent's reports (full, then deltas) make the
// server count the addresses its pods hold; a delta on a stale base and a
// malformed report are refused and change nothing; a VM port never comes
// from an agent's block.
func TestAddressReports(t *testing.T) {
	s := reportsServer(t)
	block, vm := s.agentBlockAndVM("n1")
	a0, a1 := block.Addr(), block.Addr().Next()
	dev := api.VMPortDevice("vm-1")
	now := time.Now().UTC().Truncate(time.Second)
	reloads := s.state.Stats().Reloads
	full := api.AddressReport{Full: true,
		Added:  []ipam.ReportedAddress{pod(a0, block, "c0"), pod(a1, block, "c1")},
		Blocks: []ipam.ReportedBlock{{Network: "pods", Prefix: block, Used: 2, Open: true}},
		Ports:  []ipam.ReportedPort{{ID: "vm-1", Device: dev, Wired: true, Since: now}}}
	if code, body := s.call(n1Token, "PUT", "/v1/hosts/n1/addresses", full); code != http.StatusOK || body["generation"] != 1.0 {
		t.Fatalf("full report: %d %v", code, body)
	}
	s.wantUsed(block, 2)
	s.wantUsed(vm.Block, 1)
	s.wantFindings()
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `terrane_addresses_allocated{network="pods"} 3`; !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics lacks %s (two pods, one VM port):\n%s", want, metrics)
	}

	// A delta on a generation the server does not hold: 409, field base.
	stale := api.AddressReport{Base: 7, Removed: []ipam.AddressKey{{Network: "pods", Addr: a1}}, Blocks: full.Blocks, Ports: full.Ports}
	if code, body := s.call(n1Token, "PUT", "/v1/hosts/n1/addresses", stale); code != http.StatusConflict || body["field"] != "base" {
		t.Errorf("stale base: %d %v", code, body)
	}
	stale.Base = 1
	stale.Blocks = []ipam.ReportedBlock{{Network: "pods", Prefix: block, Used: 1, Open: true}}
	if code, body := s.call(n1Token, "PUT", "/v1/hosts/n1/addresses", stale); code != http.StatusOK || body["generation"] != 2.0 {
		t.Fatalf("delta: %d %v", code, body)
	}
	s.wantUsed(block, 1)

	for _, tt := range []struct {
		name, token, host, field string
		rep                      api.AddressReport
		code                     int
	}{
		{"no attachment", n1Token, "n1", "added[0].attachment", api.AddressReport{Full: true, Added: []ipam.ReportedAddress{{Network: "pods", Addr: a0, Block: block}}}, http.StatusBadRequest},
		{"address outside its block", n1Token, "n1", "added[0].block", api.AddressReport{Full: true, Added: []ipam.ReportedAddress{pod(netip.MustParseAddr("10.9.9.9"), block, "c9")}}, http.StatusBadRequest},
		{"another host's report", n1Token, "n2", "", api.AddressReport{Full: true}, http.StatusForbidden},
		{"unregistered host", adminToken, "n9", "host", api.AddressReport{Full: true}, http.StatusNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := s.call(tt.token, "PUT", "/v1/hosts/"+tt.host+"/addresses", tt.rep)
			if code != tt.code || (tt.field != "" && body["field"] != tt.field) {
				t.Errorf("%d %v; want %d with field %q", code, body, tt.code, tt.field)
			}
			s.wantUsed(block, 1) // nothing changed
		})
	}

	// The agent's block is not released while its agent reports it in use.
	path := "/v1/hosts/n1/blocks/pods/" + block.Addr().String() + "/28"
	if code, body := s.call(n1Token, "DELETE", path, nil); code != http.StatusConflict || !strings.Contains(body["error"].(string), "in use") {
		t.Errorf("releasing an agent block in use: %d %v", code, body)
	}
	// The server's writes: the reports live outside v1/ and never reload
	// the state.
	if got := s.state.Stats().Reloads; got != reloads {
		t.Errorf("the state was reloaded %d times by address reports, want 0", got-reloads)
	}
}

// TestCheckFindsAndExplains: each problem the audit knows is found when
// injected, named with its endpoints, host, block and since when; a repair
// is a dry run unless asked, and releases only the VM port proven leaked.
func TestCheckFindsAndExplains(t *testing.T) {
	s := reportsServer(t)
	block, vm := s.agentBlockAndVM("n1")
	now := time.Now().UTC().Truncate(time.Second)
	dev := api.VMPortDevice("vm-1")
	report := func(token, host string, rep api.AddressReport) {
		t.Helper()
		rep.Full = true
		if code, body := s.call(token, "PUT", "/v1/hosts/"+host+"/addresses", rep); code != http.StatusOK {
			t.Fatalf("report of %s: %d %v", host, code, body)
		}
	}
	healthy := api.AddressReport{Added: []ipam.ReportedAddress{pod(block.Addr(), block, "c0")},
		Blocks: []ipam.ReportedBlock{{Network: "pods", Prefix: block, Used: 1, Open: true}},
		Ports:  []ipam.ReportedPort{{ID: "vm-1", Device: dev, Wired: true, Since: now}}}
	report(n1Token, "n1", healthy)
	s.wantFindings()

	// n2's agent claims to hold the VM port's address (in n1's server block).
	report(adminToken, "n2", api.AddressReport{Added: []ipam.ReportedAddress{pod(vm.Addr, vm.Block, "intruder")}})
	f := s.wantFindings("address-outside-blocks", "address-twice")
	if tw := f[1]; tw.Addr != vm.Addr || len(tw.Holders) != 2 || tw.Holders[0].Path != "api" || tw.Holders[1].Path != "cni" || tw.Since.IsZero() {
		t.Errorf("address-twice finding: %+v", tw)
	}
	ex := s.explain(vm.Addr)
	if len(ex.Holders) != 2 || len(ex.Findings) == 0 || ex.Places[0].Host != "n1" || ex.Places[0].Issuer != ipam.IssuerServer {
		t.Errorf("explain %s: %+v", vm.Addr, ex)
	}
	report(adminToken, "n2", api.AddressReport{})
	s.wantFindings()

	// The pool counts more than the agent reports.
	bad := healthy
	bad.Blocks = []ipam.ReportedBlock{{Network: "pods", Prefix: block, Used: 3, Open: true}}
	report(n1Token, "n1", bad)
	s.wantFindings("block-count-mismatch")

	// A pod whose netns went and which the agent failed to release.
	orphan := healthy
	orphan.Added = []ipam.ReportedAddress{pod(block.Addr(), block, "c0")}
	orphan.Added[0].Orphaned, orphan.Added[0].OrphanedSince = true, now.Add(-time.Hour)
	report(n1Token, "n1", orphan)
	if f := s.wantFindings("leak"); f[0].Release != "" || f[0].Holders[0].Path != "cni" {
		t.Errorf("a pod's leak is the agent's to release: %+v", f[0])
	}

	// The VM's device has been missing for an hour: leaked, releasable.
	gone := healthy
	gone.Ports = []ipam.ReportedPort{{ID: "vm-1", Device: dev, Wired: false, Since: now.Add(-time.Hour)}}
	report(n1Token, "n1", gone)
	if f := s.wantFindings("leak"); f[0].Release != "vm-1" || f[0].Host != "n1" || f[0].Block != vm.Block {
		t.Errorf("leaked VM port finding: %+v", f[0])
	}
	if code, body := s.call(adminToken, "POST", "/v1/check/repair", api.RepairRequest{DryRun: true}); code != http.StatusOK || len(body["released"].([]any)) != 1 {
		t.Fatalf("repair dry run: %d %v", code, body)
	}
	if _, ok := s.endpoint("vm-1"); !ok {
		t.Fatal("a dry run released the port")
	}
	if code, body := s.call(adminToken, "POST", "/v1/check/repair", api.RepairRequest{}); code != http.StatusOK || body["released"].([]any)[0] != "vm-1" {
		t.Fatalf("repair: %d %v", code, body)
	}
	if e, ok := s.endpoint("vm-1"); ok {
		t.Errorf("after the repair the server still holds %+v", e)
	}

	// A host whose agent stopped reporting long ago.
	s.state.audit.Gone = time.Nanosecond
	if f := s.wantFindings("block-of-gone-host"); f[0].Host != "n1" || f[0].Block != block {
		t.Errorf("gone host finding: %+v", f[0])
	}
}

func reportsServer(t *testing.T) *testServer {
	s := newTestServer(t, openBolt(t, t.TempDir()))
	if code, body := s.call(adminToken, "POST", "/v1/topology", map[string]any{"topology": testTopology}); code != http.StatusOK {
		t.Fatalf("apply: %d %v", code, body)
	}
	for _, h := range []string{"n1", "n2"} {
		if code, body := s.call(adminToken, "PUT", "/v1/hosts/"+h, map[string]any{"labels": map[string]string{"rack": "1"}}); code != http.StatusOK {
			t.Fatalf("register %s: %d %v", h, code, body)
		}
	}
	return s
}

// agentBlockAndVM claims a block for host's agent and allocates VM port
// vm-1 on host: it must not come from the agent's block.
func (s *testServer) agentBlockAndVM(host string) (netip.Prefix, ipam.Endpoint) {
	s.t.Helper()
	code, body := s.call(n1Token, "POST", "/v1/hosts/"+host+"/blocks", map[string]any{"network": "pods"})
	if code != http.StatusCreated {
		s.t.Fatalf("claim: %d %v", code, body)
	}
	block := netip.MustParsePrefix(body["block"].(string))
	if code, body := s.call(adminToken, "POST", "/v1/endpoints", map[string]any{"id": "vm-1", "host": host, "network": "pods"}); code != http.StatusCreated {
		s.t.Fatalf("allocate: %d %v", code, body)
	}
	vm, _ := s.endpoint("vm-1")
	if vm.Block == block || block.Contains(vm.Addr) || vm.Since.IsZero() {
		s.t.Fatalf("VM port %+v from the agent's block %s", vm, block)
	}
	return block, vm
}

func pod(a netip.Addr, block netip.Prefix, container string) ipam.ReportedAddress {
	return ipam.ReportedAddress{Network: "pods", Addr: a, Block: block, Attachment: container + "/eth0", Pod: "default/" + container, Since: time.Now().UTC().Truncate(time.Second)}
}

// wantUsed: GET /v1/blocks counts used addresses in block.
func (s *testServer) wantUsed(block netip.Prefix, used int) {
	s.t.Helper()
	var blocks map[string][]ipam.BlockInfo
	s.get("/v1/blocks", &struct {
		Blocks *map[string][]ipam.BlockInfo `json:"blocks"`
	}{&blocks})
	for _, b := range blocks["pods"] {
		if b.Prefix == block {
			if b.Used != used {
				s.t.Errorf("block %s: used %d, want %d", block, b.Used, used)
			}
			return
		}
	}
	s.t.Errorf("block %s not listed: %v", block, blocks)
}

// wantFindings: GET /v1/check finds exactly these kinds, in order.
func (s *testServer) wantFindings(kinds ...string) []ipam.Finding {
	s.t.Helper()
	var rep api.CheckReport
	s.get("/v1/check", &rep)
	var got []string
	for _, f := range rep.Findings {
		got = append(got, f.Kind)
	}
	if !slices.Equal(got, kinds) || rep.Clean != (len(kinds) == 0) {
		s.t.Errorf("check: %v (clean %v), want %v:\n%+v", got, rep.Clean, kinds, rep.Findings)
	}
	return rep.Findings
}

func (s *testServer) explain(a netip.Addr) ipam.Explanation {
	var ex ipam.Explanation
	s.get("/v1/addresses/"+a.String(), &ex)
	return ex
}

// get sends an admin GET and decodes the JSON answer into v.
func (s *testServer) get(path string, v any) {
	s.t.Helper()
	req, _ := http.NewRequest("GET", s.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
}

func (s *testServer) endpoint(id string) (ipam.Endpoint, bool) {
	s.t.Helper()
	var e ipam.Endpoint
	var ok bool
	if err := s.state.View(context.Background(), func(al *ipam.Allocator, _ *topologyRecord) error { e, ok = al.Endpoint(id); return nil }); err != nil {
		s.t.Fatal(err)
	}
	return e, ok
}

// TestConflictsAre409: a request the state contradicts is a conflict, not
// bad input.
func TestConflictsAre409(t *testing.T) {
	s := reportsServer(t)
	_, vm := s.agentBlockAndVM("n1")
	for _, body := range []map[string]any{
		{"id": "vm-2", "host": "n1", "network": "pods", "addr": vm.Addr.String()}, // taken
		{"id": "vm-1", "host": "n2", "network": "pods"},                           // the ID lives on n1
	} {
		if code, resp := s.call(adminToken, "POST", "/v1/endpoints", body); code != http.StatusConflict {
			t.Errorf("%v: %d %v, want 409", body, code, resp)
		}
	}
	path := "/v1/hosts/n1/blocks/pods/" + vm.Block.Addr().String() + "/28"
	if code, resp := s.call(adminToken, "DELETE", path, nil); code != http.StatusConflict {
		t.Errorf("releasing a block with a VM port in it: %d %v, want 409", code, resp)
	}
}

// TestReportIsAHeartbeat: a recent address report is the host's sign of
// life, so its heartbeats cost no store write.
func TestReportIsAHeartbeat(t *testing.T) {
	s := reportsServer(t)
	if code, body := s.call(n1Token, "PUT", "/v1/hosts/n1/addresses", api.AddressReport{Full: true}); code != http.StatusOK {
		t.Fatalf("report: %d %v", code, body)
	}
	other := s.state.Stats().OtherWrites
	if code, body := s.call(n1Token, "PUT", "/v1/hosts/n1/heartbeat", nil); code != http.StatusOK || body["written"] != false {
		t.Errorf("heartbeat after a report: %d %v, want it not written", code, body)
	}
	if got := s.state.Stats().OtherWrites; got != other {
		t.Errorf("the heartbeat wrote %d records", got-other)
	}
	beats, err := s.state.Heartbeats(context.Background())
	if err != nil || time.Since(beats["n1"]) > time.Minute {
		t.Errorf("n1's sign of life: %v, %v", beats, err)
	}
	// A heartbeat long after the report is written.
	if res, err := s.state.Heartbeat(context.Background(), "n1", time.Now().Add(heartbeatWriteInterval+time.Second)); err != nil || !res.Written {
		t.Errorf("heartbeat after the interval: %+v, %v", res, err)
	}
}

type unavailableAuth struct{}

func (unavailableAuth) Authenticate(*http.Request) (Identity, error) {
	return Identity{}, fmt.Errorf("%w: the identity service is down", ErrAuthUnavailable)
}

// TestAuthUnavailableIs503: a caller whose credentials cannot be verified
// now is told to try again (503), not refused (401); good credentials of
// another authenticator still pass.
func TestAuthUnavailableIs503(t *testing.T) {
	st := openBolt(t, t.TempDir())
	state, err := NewState(context.Background(), st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := ParseTokens([]byte(adminToken + " admin ops\n"))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(NewAPI(state, AnyAuth{admin, unavailableAuth{}}, slog.New(slog.DiscardHandler)))
	t.Cleanup(hs.Close)
	for _, tt := range []struct {
		token string
		code  int
	}{{adminToken, http.StatusOK}, {"someone-else", http.StatusServiceUnavailable}} {
		req, _ := http.NewRequest("GET", hs.URL+"/v1/hosts", nil)
		req.Header.Set("Authorization", "Bearer "+tt.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.code {
			t.Errorf("token %q: %d, want %d", tt.token, resp.StatusCode, tt.code)
		}
	}
}
