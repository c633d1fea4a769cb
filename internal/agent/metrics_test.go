package agent

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/terrane-net/terrane/internal/cniapi"
	"github.com/terrane-net/terrane/internal/metrics"
)

// serveMetrics serves n's metrics on a loopback port for the test and
// returns a scrape function.
func (n *node) serveMetrics(t *testing.T) func() metrics.Families {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- n.ServeMetrics(ctx, "127.0.0.1:0", func(a net.Addr) { addrc <- a }) }()
	var url string
	select {
	case a := <-addrc:
		url = "http://" + a.String() + "/metrics"
	case err := <-done:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("metrics listener: %v", err)
		}
	})
	return func() metrics.Families {
		t.Helper()
		f, err := metrics.Scrape(http.DefaultClient, url)
		if err != nil {
			t.Fatal(err)
		}
		if bad := metrics.Verify(f, "agent"); len(bad) > 0 {
			t.Errorf("the agent's exposition differs from the catalogue:\n%v", bad)
		}
		return f
	}
}

// serveCNI serves n's CNI socket for the test and returns a client of it.
func (n *node) serveCNI(t *testing.T) *cniapi.Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sock := filepath.Join(t.TempDir(), "cni.sock")
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, sock, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-done })
	return cniapi.NewClient(sock, 0)
}

func value(t *testing.T, f metrics.Families, name string, labels ...string) float64 {
	t.Helper()
	v, _ := f.Value(name, labels...)
	return v
}

// TestAgentMetrics: a CNI ADD and DEL through the agent's real socket,
// then real scrapes of its metrics listener: each adds one to its latency
// histogram, a refused ADD counts as an error, the host's blocks and
// addresses are those it holds, its block claims are those the server
// counted, and the report that carries the ADD is observed as lag once
// the server holds the address.
func TestAgentMetrics(t *testing.T) {
	e := newEnv(t, flatTopology)
	n := e.startNode("n1", "192.168.10.11", "")
	scrape := n.serveMetrics(t)
	cni := n.serveCNI(t)
	ctx := context.Background()

	f := scrape()
	if v := value(t, f, "terrane_agent_ready"); v != 1 {
		t.Errorf("terrane_agent_ready = %g, want 1", v)
	}
	adds := value(t, f, "terrane_agent_cni_duration_seconds", "op", "add", "result", "ok")
	lags := value(t, f, "terrane_agent_address_report_lag_seconds")

	r, err := cni.Add(ctx, addReq("p1"))
	if err != nil {
		t.Fatal(err)
	}
	bad := addReq("p2")
	bad.HostVeth = "wrong"
	if _, err := cni.Add(ctx, bad); err == nil {
		t.Fatal("an ADD with the wrong host veth was accepted")
	}
	f = scrape()
	if v := value(t, f, "terrane_agent_cni_duration_seconds", "op", "add", "result", "ok"); v != adds+1 {
		t.Errorf("ADDs ok: %g, want %g", v, adds+1)
	}
	if v := value(t, f, "terrane_agent_cni_duration_seconds", "op", "add", "result", "error"); v != 1 {
		t.Errorf("ADDs refused: %g, want 1", v)
	}
	blocks := value(t, f, "terrane_agent_blocks", "network", "pods")
	used := value(t, f, "terrane_agent_addresses_allocated", "network", "pods")
	free := value(t, f, "terrane_agent_addresses_free", "network", "pods")
	if blocks < 1 || used != 1 || free != blocks*16-used {
		t.Errorf("pods: %g blocks, %g addresses allocated, %g free; want 1 allocated and the rest of the /28 blocks free", blocks, used, free)
	}

	// The server acknowledges the report that carries p1: the lag is
	// observed and nothing is pending; the server counts the address.
	// (A report already in flight when p1 was added may be the first one
	// acknowledged: wait for the one that leaves nothing pending.)
	waitFor(t, "the report lag observed and nothing pending", func() bool {
		f := scrape()
		return value(t, f, "terrane_agent_address_report_lag_seconds") > lags &&
			value(t, f, "terrane_agent_address_report_pending_seconds") == 0
	})
	f = scrape()
	lag := f["terrane_agent_address_report_lag_seconds"].GetMetric()[0].GetHistogram()
	if lag.GetSampleSum() <= 0 || lag.GetSampleSum() > 10 {
		t.Errorf("report lag sum %gs over %d reports: want above 0 and below ReportMax", lag.GetSampleSum(), lag.GetSampleCount())
	}
	if v := value(t, f, "terrane_agent_address_reports_total", "result", "ok"); v < 1 {
		t.Errorf("reports ok: %g", v)
	}
	text, err := e.admin.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sf, err := metrics.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if v := value(t, sf, "terrane_addresses_allocated", "network", "pods"); v != 1 {
		t.Errorf("the server counts %g addresses in pods, want 1 (%s)", v, r.Addr)
	}
	// Every claim the agent counts ok, the server counted.
	claims := value(t, f, "terrane_agent_block_claims_total", "network", "pods", "result", "ok")
	if srv := value(t, sf, "terrane_block_claims_total", "network", "pods", "result", "ok"); claims < 1 || claims != srv {
		t.Errorf("the agent counts %g claims of pods, the server %g", claims, srv)
	}
	if v := value(t, f, "terrane_agent_block_claim_duration_seconds", "network", "pods"); v != claims {
		t.Errorf("claim latency observed %g times for %g claims", v, claims)
	}

	if err := cni.Del(ctx, cniapi.Attachment{ContainerID: "p1", IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	f = scrape()
	if v := value(t, f, "terrane_agent_cni_duration_seconds", "op", "del", "result", "ok"); v != 1 {
		t.Errorf("DELs: %g, want 1", v)
	}
	if v := value(t, f, "terrane_agent_addresses_allocated", "network", "pods"); v != 0 {
		t.Errorf("pods allocated after the DEL: %g, want 0", v)
	}
}

// TestAgentMetricsBGP: the speaker's sessions as gauges, one per peer
// and one per state; every metric of the catalogue's agent part is
// exposed.
func TestAgentMetricsBGP(t *testing.T) {
	e := newEnv(t, bgpTopology)
	fs := &fakeSpeakers{}
	e.bgp = func(string) BGPOptions { return BGPOptions{Start: fs.start} }
	n := e.startNode("n1", "192.168.10.11", "")
	first := e.hostBlocks("pods", "n1")
	fs.waitAnnounces(t, "the first block announced", func(ps []netip.Prefix) bool { return len(ps) == len(first) })
	scrape := n.serveMetrics(t)
	// An ADD, and its report acknowledged: with the speaker's sessions,
	// every metric of the agent has a value.
	if _, err := n.Add(context.Background(), addReq("p1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the report lag observed", func() bool {
		return value(t, scrape(), "terrane_agent_address_report_lag_seconds") > 0
	})
	f := scrape()
	if missing := metrics.Missing(f, "agent"); len(missing) > 0 {
		t.Errorf("the scrape lacks %v", missing)
	}
	for _, peer := range []string{"192.168.1.1", "192.168.1.2"} {
		if v := value(t, f, "terrane_agent_bgp_session_up", "peer", peer); v != 1 {
			t.Errorf("session with %s up = %g, want 1", peer, v)
		}
		for _, s := range metrics.BGPStates {
			want := 0.0
			if s == "established" {
				want = 1
			}
			if v, ok := f.Value("terrane_agent_bgp_session_state", "peer", peer, "state", s); !ok || v != want {
				t.Errorf("session with %s in state %s = %g (%v), want %g", peer, s, v, ok, want)
			}
		}
	}
	if v := value(t, f, "terrane_agent_bgp_announced_prefixes"); v != float64(len(first)) {
		t.Errorf("announced prefixes %g, want %d", v, len(first))
	}
}
