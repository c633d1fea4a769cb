package lab

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/metrics"
	"github.com/terrane-net/terrane/internal/testbin"
)

// agentMetricsAddr is where the lab's agents serve metrics in this test:
// loopback of each host's own namespace.
const agentMetricsAddr = "127.0.0.1:9611"

// scrapeAgent scrapes the metrics of host's agent from inside the host's
// namespace (the connection is made on the namespace's thread; HTTP/1.0,
// so the answer ends with the connection).
func scrapeAgent(n Names, host string) (metrics.Families, error) {
	var f metrics.Families
	err := inHost(n, host, func() error {
		c, err := net.DialTimeout("tcp", agentMetricsAddr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", agentMetricsAddr); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /metrics: %s", resp.Status)
		}
		f, err = metrics.Parse(resp.Body)
		return err
	})
	return f, err
}

// TestPrivilegedLabBGPMetrics: l3-bgp from the real binaries, each agent
// serving metrics (--metrics-address): once BIRD on each ToR has every
// host's session established, each agent's
// terrane_agent_bgp_session_up{peer=its ToR} and the server's
// terrane_bgp_session_up{host,peer} are 1 and the session's state gauge
// says established. When BIRD disables one host's session, that host's
// gauges fall to 0 — the agent's at once, the server's with the next
// report — and the other hosts' stay 1.
func TestPrivilegedLabBGPMetrics(t *testing.T) {
	requireBird(t)
	n := testLab(t)
	bin := testbin.Terrane(t)
	st, err := Up(t.Context(), UpOptions{Name: n.Lab, Dir: n.Dir, Scenario: shipped(t, "l3-bgp"), Terrane: filepath.Join(bin, "terrane"),
		AgentArgs: []string{"--metrics-address", agentMetricsAddr}, Progress: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	c, err := AdminClient(n)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	// The ToR each host peers with (examples/lab/l3-bgp.yaml).
	tor := map[string]string{"r1-host-1": "192.168.1.1", "r1-host-2": "192.168.1.1", "r2-host-1": "192.168.2.1", "r2-host-2": "192.168.2.1"}
	router := map[string]string{"192.168.1.1": "tor-1", "192.168.2.1": "tor-2"}

	// want: each host's session is up (1) or down (0) in BIRD, in its
	// agent's metrics and in the server's.
	sessions := func(want map[string]float64) string {
		srv, err := c.Metrics(t.Context())
		if err != nil {
			return err.Error()
		}
		sf, err := metrics.Parse(strings.NewReader(srv))
		if err != nil {
			return err.Error()
		}
		for host, up := range want {
			peer := tor[host]
			bs, err := ReadBird(t.Context(), st, router[peer])
			if err != nil {
				return err.Error()
			}
			established := false
			for _, p := range bs.Protocols {
				if p.Name == birdProtocol(birdHostPrefix, host) {
					established = p.Established()
				}
			}
			if established != (up == 1) {
				return fmt.Sprintf("BIRD on %s: session with %s established = %v, want %v", router[peer], host, established, up == 1)
			}
			af, err := scrapeAgent(n, host)
			if err != nil {
				return fmt.Sprintf("scrape the agent of %s: %v", host, err)
			}
			if bad := metrics.Verify(af, "agent"); len(bad) > 0 {
				t.Errorf("agent %s: %v", host, bad)
			}
			if v, ok := af.Value("terrane_agent_bgp_session_up", "peer", peer); !ok || v != up {
				return fmt.Sprintf("agent %s: terrane_agent_bgp_session_up{peer=%s} = %g (%v), want %g", host, peer, v, ok, up)
			}
			if v, _ := af.Value("terrane_agent_bgp_session_state", "peer", peer, "state", "established"); v != up {
				return fmt.Sprintf("agent %s: session state established = %g, want %g", host, v, up)
			}
			if v, ok := sf.Value("terrane_bgp_session_up", "host", host, "peer", peer); !ok || v != up {
				return fmt.Sprintf("server: terrane_bgp_session_up{host=%s,peer=%s} = %g (%v), want %g", host, peer, v, ok, up)
			}
		}
		return ""
	}
	all := map[string]float64{"r1-host-1": 1, "r1-host-2": 1, "r2-host-1": 1, "r2-host-2": 1}
	eventually(t, 30*time.Second, func() string { return sessions(all) })

	// BIRD drops r2-host-1's session and keeps it down.
	down := "r2-host-1"
	if _, err := birdc(t.Context(), n.BirdCtl("tor-2"), "disable", birdProtocol(birdHostPrefix, down)); err != nil {
		t.Fatal(err)
	}
	all[down] = 0
	start := time.Now()
	eventually(t, 30*time.Second, func() string { return sessions(all) })
	t.Logf("%s's session down in BIRD, the agent's and the server's metrics within %s", down, time.Since(start).Round(time.Millisecond))
}
