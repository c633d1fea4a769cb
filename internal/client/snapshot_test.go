package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/client/clienttest"
)

// TestSnapshotLongPollOverUnixSocket: an agent's watch. Over the unix
// socket, a node reads the snapshot, long-polls past its revision, and is
// answered by the block it claims meanwhile; a poll with nothing new ends
// after its wait with the same revision.
func TestSnapshotLongPollOverUnixSocket(t *testing.T) {
	srv := clienttest.StartUnix(t)
	ctx := context.Background()
	admin := newClient(t, client.Config{Server: srv.URL, CAFile: srv.PKI.CA.Cert, CertFile: srv.PKI.Admin.Cert, KeyFile: srv.PKI.Admin.Key})
	node := newClient(t, client.Config{Server: srv.URL, CAFile: srv.PKI.CA.Cert, Token: clienttest.NodeToken})

	empty, err := node.Snapshot(ctx, 0, 0)
	if err != nil || empty.Topology != "" || len(empty.Hosts) != 0 {
		t.Fatalf("snapshot before a topology: %+v %v", empty, err)
	}
	if _, err := admin.ApplyTopology(ctx, api.TopologyRequest{Topology: clienttest.Topology}); err != nil {
		t.Fatal(err)
	}
	if _, err := node.RegisterHost(ctx, "n1", api.HostRequest{Labels: map[string]string{"rack": "1"}}); err != nil {
		t.Fatal(err)
	}
	s0, err := node.Snapshot(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s0.Topology != clienttest.Topology || len(s0.Hosts) != 1 || s0.Hosts[0].Groups["pods"] != "rack-1" || len(s0.Groups["pods"]["rack-1"]) == 0 {
		t.Fatalf("snapshot: %+v", s0)
	}

	type result struct {
		s   *api.Snapshot
		err error
	}
	polled := make(chan result, 1)
	go func() {
		s, err := node.Snapshot(ctx, s0.Revision, 20*time.Second)
		polled <- result{s, err}
	}()
	claim, err := node.ClaimBlock(ctx, "n1", "pods")
	if err != nil {
		t.Fatal(err)
	}
	r := <-polled
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.s.Revision <= s0.Revision || len(r.s.Blocks["pods"]) != 1 || r.s.Blocks["pods"][0].Prefix != claim.Block {
		t.Fatalf("long poll answered revision %d (was %d) with blocks %+v, want the claimed %s", r.s.Revision, s0.Revision, r.s.Blocks["pods"], claim.Block)
	}

	idle, err := node.Snapshot(ctx, r.s.Revision, 200*time.Millisecond)
	if err != nil || idle.Revision != r.s.Revision {
		t.Fatalf("idle poll: %+v %v, want revision %d unchanged", idle, err, r.s.Revision)
	}
	_, err = admin.Snapshot(ctx, 1, 2*time.Minute)
	apiError(t, err, 400, "wait")
}
