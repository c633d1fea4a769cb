package agent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/client/clienttest"
	"github.com/terrane-net/terrane/internal/ipam"
)

// seenServer is the client the agent calls, noting every error it
// returned that says no server could be asked.
type seenServer struct {
	*client.Client
	mu          sync.Mutex
	unreachable []error
}

func (s *seenServer) note(err error) {
	if client.Unreachable(err) {
		s.mu.Lock()
		s.unreachable = append(s.unreachable, err)
		s.mu.Unlock()
	}
}

func (s *seenServer) errs() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.unreachable)
}

func (s *seenServer) RegisterHost(ctx context.Context, name string, req api.HostRequest) (*api.HostResult, error) {
	r, err := s.Client.RegisterHost(ctx, name, req)
	s.note(err)
	return r, err
}

func (s *seenServer) ClaimBlock(ctx context.Context, host, network string) (*api.BlockClaim, error) {
	r, err := s.Client.ClaimBlock(ctx, host, network)
	s.note(err)
	return r, err
}

func (s *seenServer) ReleaseBlock(ctx context.Context, host, network string, block netip.Prefix) ([]ipam.Change, error) {
	r, err := s.Client.ReleaseBlock(ctx, host, network, block)
	s.note(err)
	return r, err
}

func (s *seenServer) SnapshotOf(ctx context.Context, host string, after int64, wait time.Duration) (*api.Snapshot, error) {
	r, err := s.Client.SnapshotOf(ctx, host, after, wait)
	if ctx.Err() == nil {
		s.note(err)
	}
	return r, err
}

func (s *seenServer) Heartbeat(ctx context.Context, host string) (*api.HeartbeatResult, error) {
	r, err := s.Client.Heartbeat(ctx, host)
	s.note(err)
	return r, err
}

func (s *seenServer) ReportAddresses(ctx context.Context, host string, rep api.AddressReport) (*api.AddressReportResult, error) {
	r, err := s.Client.ReportAddresses(ctx, host, rep)
	s.note(err)
	return r, err
}

// clusterEnv is newEnv on two servers of one store: the nodes are given
// both (first, second), the test's admin client only the second.
func clusterEnv(t *testing.T, topo string) (*env, []*clienttest.Server, *seenServer) {
	t.Helper()
	srvs := clienttest.Cluster(t, 2, false)
	cfg := client.Config{CAFile: srvs[0].PKI.CA.Cert, CertFile: srvs[0].PKI.Admin.Cert, KeyFile: srvs[0].PKI.Admin.Key, Timeout: 5 * time.Second}
	cfg.Server = srvs[1].URL
	admin, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.CloseIdleConnections)
	if _, err := admin.ApplyTopology(context.Background(), api.TopologyRequest{Topology: topo}); err != nil {
		t.Fatal(err)
	}
	cfg.Server = srvs[0].URL + "," + srvs[1].URL
	both, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(both.CloseIdleConnections)
	seen := &seenServer{Client: both}
	return &env{t: t, srv: srvs[1], admin: admin, server: seen}, srvs, seen
}

// TestAgentFailsOverToTheSecondServer: an agent given two servers of one
// store keeps working when the first is killed — its watch, reports and
// block claims go on through the second — and never counts itself offline:
// no call returned that no server answered, and
// terrane_agent_server_unreachable_seconds stays 0.
func TestAgentFailsOverToTheSecondServer(t *testing.T) {
	e, srvs, seen := clusterEnv(t, flatTopology)
	n := e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()
	unreachableFor := unreachableGauge(t, n.Agent)
	add := func(id string) {
		t.Helper()
		if _, err := n.Add(ctx, addReq(id)); err != nil {
			t.Fatalf("ADD %s: %v", id, err)
		}
	}
	add("before")
	waitFor(t, "the first pod reported", func() bool { return e.usedOn("n1") == 1 })
	if c := seen.Server(); c != srvs[0].URL {
		t.Fatalf("the agent calls %s, want the first server %s", c, srvs[0].URL)
	}

	srvs[0].Kill()
	// More pods than a /28 holds: blocks are claimed through the second.
	const pods = 24
	for i := range pods {
		add(fmt.Sprintf("after-%02d", i))
	}
	waitFor(t, "every pod reported through the second server", func() bool { return e.usedOn("n1") == 1+pods })
	blocks, err := e.admin.Blocks(ctx, "pods")
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks["pods"]) < 2 {
		t.Errorf("n1 holds %d blocks for %d pods: no claim went through the second server", len(blocks["pods"]), 1+pods)
	}
	if c := seen.Server(); c != srvs[1].URL {
		t.Errorf("the agent calls %s, want the second server %s", c, srvs[1].URL)
	}
	chk, err := e.admin.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !chk.Clean {
		t.Errorf("check after the failover: %+v", chk.Findings)
	}
	// The watch follows the second server: a peer's block reaches the
	// routes.
	if _, err := e.admin.RegisterHost(ctx, "n2", api.HostRequest{IP: netip.MustParseAddr("192.168.10.12"), Labels: map[string]string{"rack": "1"}}); err != nil {
		t.Fatal(err)
	}
	claim, err := e.admin.ClaimBlock(ctx, "n2", "pods")
	if err != nil {
		t.Fatal(err)
	}
	want := claim.Block.String() + " via 192.168.10.12"
	waitFor(t, "the route to n2's block claimed through the second server", func() bool {
		for _, r := range n.routes() {
			if strings.HasPrefix(r, want) {
				return true
			}
		}
		return false
	})
	if n.offline() {
		t.Error("the agent counts itself offline while the second server answers")
	}
	if v := unreachableFor(); v != 0 {
		t.Errorf("terrane_agent_server_unreachable_seconds = %g while the second server answers", v)
	}
	if errs := seen.errs(); len(errs) > 0 {
		t.Errorf("calls returned %d times that no server answered, first: %v", len(errs), errs[0])
	}
}

// claimsTwice claims the first block of pods it is asked for twice and answers
// the second claim: the first answer is lost, as when a claim is repeated
// on another server after its connection dropped.
type claimsTwice struct {
	*client.Client
	mu   sync.Mutex
	lost netip.Prefix
}

func (c *claimsTwice) ClaimBlock(ctx context.Context, host, network string) (*api.BlockClaim, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if network == "pods" && !c.lost.IsValid() {
		r, err := c.Client.ClaimBlock(ctx, host, network)
		if err != nil {
			return nil, err
		}
		c.lost = r.Block
	}
	return c.Client.ClaimBlock(ctx, host, network)
}

// TestAgentAdoptsABlockClaimedTwice: a block claim that ran twice leaves
// the host a block it did not ask for. The agent takes it from its next
// snapshot as its own and gives back what it does not need; the server's
// blocks of the host and the agent's pool end equal, and the audit is
// clean.
func TestAgentAdoptsABlockClaimedTwice(t *testing.T) {
	e := newEnv(t, flatTopology)
	twice := &claimsTwice{Client: e.admin}
	e.server = twice
	n := e.startNode("n1", "192.168.10.11", "")
	ctx := context.Background()
	serverBlocks := func() []netip.Prefix { return e.hostBlocks("pods", "n1") }
	poolBlocks := func() []netip.Prefix {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.pool("pods").Blocks()
	}
	twice.mu.Lock()
	lost := twice.lost
	twice.mu.Unlock()
	if !lost.IsValid() {
		t.Fatal("the agent started without claiming a block")
	}
	waitFor(t, "the host's blocks on the server and in the pool to agree on one", func() bool {
		s := serverBlocks()
		return len(s) == 1 && slices.Equal(s, poolBlocks())
	})
	// Surplus blocks go back highest first, and the lost claim took the
	// lower: the block kept is the one the agent was never told of.
	if got := serverBlocks()[0]; got != lost {
		t.Errorf("the host keeps %s, want %s, the block whose claim answer was lost, adopted", got, lost)
	}
	waitFor(t, "the server's check to be clean once the agent reported", func() bool {
		chk, err := e.admin.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return chk.Clean
	})
	if _, err := n.Add(ctx, addReq("pod")); err != nil {
		t.Fatal(err)
	}
}
