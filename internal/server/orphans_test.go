package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/ipam"
)

// TestReleaseRequests: the release requests the leader publishes for a
// host reach that host's agent only (its snapshot, GET
// /v1/hosts/{host}/releases), wake the long polls at once, are seen by
// another server on the same store, are counted in /metrics, and no API
// route writes them.
func TestReleaseRequests(t *testing.T) {
	st := openBolt(t, t.TempDir())
	s := newTestServer(t, st)
	s.setup()
	other := newTestServer(t, st) // another server: it reads the store
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go s.state.Follow(ctx)
	go other.state.Follow(ctx)

	var snap Snapshot
	s.get("/v1/snapshot?host=n1", &snap)
	polled := make(chan Snapshot, 1)
	go func() {
		var next Snapshot
		getAs(s.url, n1Token, "/v1/snapshot?host=n1&after="+strconv.FormatInt(snap.Revision, 10)+"&wait=20s", &next)
		polled <- next
	}()
	rel := ipam.OrphanedAddress{Network: "pods", Addr: netip.MustParseAddr("10.0.0.5"), Attachment: "c1/eth0", Pod: "default/a", PodUID: "u1", Reason: ipam.OrphanPodGone,
		Since: time.Now().UTC().Add(-time.Minute).Truncate(time.Second), Due: time.Now().UTC().Truncate(time.Second), Requested: time.Now().UTC().Truncate(time.Second)}
	start := time.Now()
	if n, err := s.state.SetReleases(ctx, "n1", []ipam.OrphanedAddress{rel}); err != nil || n != 1 {
		t.Fatalf("SetReleases = %d, %v", n, err)
	}
	got := <-polled
	if len(got.Releases) != 1 || got.Releases[0] != rel {
		t.Fatalf("the agent's snapshot after the write: releases %+v, want %+v", got.Releases, rel)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("the long poll took %s: the write did not wake it", time.Since(start))
	}
	// Unchanged: no write, nothing new counted.
	if n, err := s.state.SetReleases(ctx, "n1", []ipam.OrphanedAddress{rel}); err != nil || n != 0 {
		t.Fatalf("SetReleases again = %d, %v", n, err)
	}

	// Only n1 and admins read n1's requests.
	body := s.must(n1Token, "GET", "/v1/hosts/n1/releases", nil, 200)
	if rs, _ := body["releases"].([]any); len(rs) != 1 {
		t.Fatalf("n1's releases as n1: %v", body)
	}
	s.must(adminToken, "GET", "/v1/hosts/n1/releases", nil, 200)
	s.must(n1Token, "GET", "/v1/hosts/n2/releases", nil, 403)
	if _, err := s.state.SetReleases(ctx, "n2", []ipam.OrphanedAddress{rel}); err != nil {
		t.Fatal(err)
	}
	code, out := s.call(n1Token, "GET", "/v1/snapshot?host=n2", nil)
	if code != 200 || out["releases"] != nil {
		t.Fatalf("n2's snapshot as n1: %d, releases %v: want none", code, out["releases"])
	}
	// No route writes them, whoever calls.
	for _, m := range []string{"PUT", "POST", "DELETE"} {
		for _, tok := range []string{n1Token, adminToken} {
			if code, _ := s.call(tok, m, "/v1/hosts/n1/releases", `{"releases":[]}`); code != http.StatusMethodNotAllowed {
				t.Errorf("%s /v1/hosts/n1/releases: %d, want 405", m, code)
			}
		}
	}

	// The other server sees them; clearing drops the record.
	waitCond(t, "the other server's view", func() bool {
		rs, err := other.state.Releases(ctx, "n1")
		return err == nil && len(rs) == 1
	})
	if _, err := s.state.SetReleases(ctx, "n1", nil); err != nil {
		t.Fatal(err)
	}
	waitCond(t, "the other server's view cleared", func() bool {
		rs, err := other.state.Releases(ctx, "n1")
		return err == nil && len(rs) == 0
	})
	if _, err := st.Get(ctx, releasesKey("n1")); err == nil {
		t.Fatal("an empty request list left its record")
	}

	req, _ := http.NewRequest("GET", s.url+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), "terrane_pod_orphans_released_total 2\n") {
		t.Fatalf("metrics: want terrane_pod_orphans_released_total 2:\n%s", m)
	}
	// The state still commits after the writes beside its allocator.
	s.must(adminToken, "PUT", "/v1/hosts/n3", map[string]any{"ip": "192.0.2.3", "labels": map[string]string{"rack": "1"}}, 200)
}

// TestPublishOrphans: marks are published per host outside v1/ (no agent
// woken, no state reloaded), shown by check and explain, and deleted when
// none are left.
func TestPublishOrphans(t *testing.T) {
	s := reportsServer(t)
	block, _ := s.agentBlockAndVM("n1")
	a := block.Addr().Next()
	s.must(n1Token, "PUT", "/v1/hosts/n1/addresses", map[string]any{"full": true, "added": []ipam.ReportedAddress{pod(a, block, "c1")},
		"blocks": []ipam.ReportedBlock{{Network: "pods", Prefix: block, Used: 1, Open: true}}}, 200)
	s.wantFindings()
	ctx := context.Background()
	rev, reloads := s.state.Stats().Revision, s.state.Stats().Reloads
	m := ipam.OrphanedAddress{Network: "pods", Addr: a, Attachment: "c1/eth0", Pod: "default/c1", Reason: ipam.OrphanPodGone, Detail: "pod default/c1 does not exist",
		Since: time.Now().UTC().Truncate(time.Second), Due: time.Now().UTC().Add(time.Minute).Truncate(time.Second)}
	if err := s.state.PublishOrphans(ctx, "n1", []ipam.OrphanedAddress{m}); err != nil {
		t.Fatal(err)
	}
	fs := s.wantFindings("orphan-pod")
	if fs[0].Host != "n1" || fs[0].Addr != a || !fs[0].Due.Equal(m.Due) || !strings.Contains(fs[0].Detail, "release due at") {
		t.Fatalf("finding %+v", fs[0])
	}
	if ex := s.explain(a); len(ex.Findings) != 1 || ex.Findings[0].Kind != "orphan-pod" {
		t.Fatalf("explain %s: %+v", a, ex.Findings)
	}
	if st := s.state.Stats(); st.Revision != rev || st.Reloads != reloads {
		t.Fatalf("publishing marks moved the state (revision %d → %d, reloads %d → %d)", rev, st.Revision, reloads, st.Reloads)
	}
	if err := s.state.PublishOrphans(ctx, "n1", nil); err != nil {
		t.Fatal(err)
	}
	s.wantFindings()
	if os, err := s.state.Orphans(ctx); err != nil || len(os) != 0 {
		t.Fatalf("Orphans after clearing: %+v, %v", os, err)
	}
}

// getAs sends a GET as token and decodes a 200 answer into v (in any
// goroutine: it reports nothing to the test).
func getAs(url, token, path string, v any) {
	req, _ := http.NewRequest("GET", url+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		_ = json.NewDecoder(resp.Body).Decode(v)
	}
}
