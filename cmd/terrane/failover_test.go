package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/api"
	"github.com/terrane-net/terrane/internal/client"
	"github.com/terrane-net/terrane/internal/client/clienttest"
	"github.com/terrane-net/terrane/internal/store/etcd/etcdtest"
)

// TestFailoverServerProcessKilled: two `terrane server` processes on one
// etcd, a client given both. The first is killed with SIGKILL while the
// client's long poll is held by it: the poll goes on on the second and is
// answered by a block claimed there, later calls go to the second, and
// `terrane ctl` with both servers works.
func TestFailoverServerProcessKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes; skipped with -short")
	}
	isolate(t)
	etcd := etcdtest.Start(t)
	var procs []*serverProcess
	for range 2 {
		procs = append(procs, startServerWith(t, "server --insecure --listen 127.0.0.1:0 --data-dir "+t.TempDir()+
			" --store etcd --etcd-endpoints "+strings.Join(etcd.Endpoints(), ","), "http://"))
	}
	list := procs[0].url + "," + procs[1].url
	c, err := client.New(client.Config{Server: list, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	second, err := client.New(client.Config{Server: procs[1].url, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.CloseIdleConnections)
	ctx := context.Background()
	if _, err := c.ApplyTopology(ctx, api.TopologyRequest{Topology: clienttest.Topology}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RegisterHost(ctx, "n1", api.HostRequest{Labels: map[string]string{"rack": "1"}}); err != nil {
		t.Fatal(err)
	}
	// Through the second, the host registered through the first: one store.
	s0, err := second.Snapshot(ctx, 0, 0)
	if err != nil || len(s0.Hosts) != 1 {
		t.Fatalf("snapshot through the second server: %+v %v", s0, err)
	}

	type result struct {
		s   *api.Snapshot
		err error
	}
	polled := make(chan result, 1)
	go func() {
		s, err := c.SnapshotOf(ctx, "n1", s0.Revision, 20*time.Second)
		polled <- result{s, err}
	}()
	// Held by the first server, or about to be sent to it: either way the
	// first is gone when it needs an answer.
	if err := procs[0].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = procs[0].cmd.Wait()
	start := time.Now()
	claim, err := second.ClaimBlock(ctx, "n1", "pods")
	if err != nil {
		t.Fatal(err)
	}
	r := <-polled
	if r.err != nil {
		t.Fatalf("the long poll with its server killed: %v\nlogs of the second:\n%s", r.err, procs[1].logs)
	}
	if r.s.Revision <= s0.Revision || len(r.s.Blocks["pods"]) != 1 || r.s.Blocks["pods"][0].Prefix != claim.Block {
		t.Fatalf("long poll answered revision %d (was %d) with blocks %+v, want the claimed %s", r.s.Revision, s0.Revision, r.s.Blocks["pods"], claim.Block)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("the poll took %s after the kill: it waited out its wait instead of failing over", d)
	}
	if c.Server() != procs[1].url {
		t.Errorf("Server() = %s after the kill, want %s", c.Server(), procs[1].url)
	}
	if out := mustCtl(t, "--server", list, "blocks", "list"); !strings.Contains(out, claim.Block.String()) {
		t.Fatalf("ctl blocks list with the first server killed:\n%s", out)
	}
}
