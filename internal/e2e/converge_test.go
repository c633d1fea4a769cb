//go:build linux

package e2e

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/lab"
)

// pair is two L2 peers of a lab and a network both are in.
type pair struct {
	owner, ownerIP, peer, peerNetns, network string
}

func peers(tb testing.TB, st *lab.State) pair {
	tb.Helper()
	hs := st.Scenario.Hosts
	if len(hs) < 2 {
		tb.Fatal("the scenario needs two hosts")
	}
	p := pair{owner: hs[0].Name, ownerIP: hs[0].IP.String(), peer: hs[1].Name}
	nodes, err := st.Nodes()
	if err != nil {
		tb.Fatal(err)
	}
	for _, nd := range nodes {
		if nd.Name == p.peer {
			p.peerNetns = nd.Netns
		}
	}
	c, err := lab.AdminClient(lab.Names{Lab: st.Name, Dir: st.Dir})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.CloseIdleConnections()
	snap, err := c.Snapshot(context.Background(), 0, 0)
	if err != nil {
		tb.Fatal(err)
	}
	for _, h := range snap.Hosts {
		if h.Name == p.owner {
			for n := range h.Groups {
				if p.network == "" || n < p.network {
					p.network = n
				}
			}
		}
	}
	if p.network == "" || p.peerNetns == "" {
		tb.Fatalf("no network or namespace for %+v", p)
	}
	return p
}

// routesVia reports whether the peer's Terrane table routes any address of
// b via the owner.
func (p pair) routesVia(tb testing.TB, b netip.Prefix) bool {
	tb.Helper()
	nr, err := lab.ReadRoutes(context.Background(), p.peer, "host", p.peerNetns)
	if err != nil {
		tb.Fatal(err)
	}
	return slices.ContainsFunc(nr.Routes, func(r lab.KernelRoute) bool {
		d, err := netip.ParsePrefix(withBits(r.Dst))
		return r.Table == "250" && r.Gateway == p.ownerIP && err == nil && d.Overlaps(b)
	})
}

// converge claims a block for the owner through the control API and
// returns how long until the peer's kernel table routes it via the owner;
// then releases it and waits for the route to go.
func (p pair) converge(tb testing.TB, st *lab.State) time.Duration {
	tb.Helper()
	ctx := context.Background()
	c, err := lab.AdminClient(lab.Names{Lab: st.Name, Dir: st.Dir})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.CloseIdleConnections()
	start := time.Now()
	claim, err := c.ClaimBlock(ctx, p.owner, p.network)
	if err != nil {
		tb.Fatal(err)
	}
	for !p.routesVia(tb, claim.Block) {
		if time.Since(start) > 10*time.Second {
			tb.Fatalf("block %s claimed by %s never reached %s's table", claim.Block, p.owner, p.peer)
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	if _, err := c.ReleaseBlock(ctx, p.owner, p.network, claim.Block); err != nil {
		tb.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); p.routesVia(tb, claim.Block); {
		if time.Now().After(deadline) {
			tb.Fatalf("released block %s still routed on %s", claim.Block, p.peer)
		}
		time.Sleep(time.Millisecond)
	}
	return took
}

// TestPrivilegedE2EPeersConverge: a block claimed for one host reaches its
// L2 peer's table, and leaves it when released. How fast is the benchmark
// below (docs/benchmarks.md), not a timed assertion.
func TestPrivilegedE2EPeersConverge(t *testing.T) {
	st := up(t, "flat-l2")
	p := peers(t, st)
	t.Logf("claim → peer route in %s", p.converge(t, st))
}

// BenchmarkPrivilegedE2EConverge: time from a block claim at the server to
// the route in an L2 peer's kernel table (server commit, long poll,
// snapshot, route sync): go test -run '^$' -bench Converge ./internal/e2e
func BenchmarkPrivilegedE2EConverge(b *testing.B) {
	st := up(b, "flat-l2")
	p := peers(b, st)
	var total time.Duration
	worst := time.Duration(0)
	b.ResetTimer()
	for range b.N {
		d := p.converge(b, st)
		total += d
		worst = max(worst, d)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/converge")
	b.ReportMetric(float64(worst.Microseconds())/1000, "ms-worst")
}
