package etcdtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func client(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func put(t *testing.T, cli *clientv3.Client, key, value string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := cli.Put(ctx, key, value)
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return resp.Header.Revision
}

// TestClusterSurvivesMemberRestart: with one of three members down the
// others keep accepting writes, and the member catches up after a restart.
func TestClusterSurvivesMemberRestart(t *testing.T) {
	start := time.Now()
	c := StartCluster(t, 3)
	t.Logf("3-member cluster ready in %s", time.Since(start).Round(time.Millisecond))
	put(t, client(t, c.Endpoints()...), "k/0", "before")

	c.Stop(0)
	others := client(t, c.Endpoint(1), c.Endpoint(2))
	var last int64
	for i := 1; i <= 20; i++ {
		last = put(t, others, fmt.Sprintf("k/%d", i), "while m0 was down")
	}

	start = time.Now()
	c.Restart(0)
	t.Logf("member 0 restarted in %s", time.Since(start).Round(time.Millisecond))
	only0 := client(t, c.Endpoint(0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A serializable read answers from member 0's own copy: it must
	// catch up with what was written while it was down.
	for {
		resp, err := only0.Get(ctx, "k/", clientv3.WithPrefix(), clientv3.WithSerializable())
		if err == nil && resp.Count == 21 && resp.Header.Revision >= last {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("member 0 did not catch up: last read %v, %v; want 21 keys at revision >= %d", resp, err, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := only0.Get(ctx, "k/20")
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].ModRevision != last {
		t.Fatalf("linearizable read from member 0: %v, %v; want k/20 at %d", resp, err, last)
	}
	// And it takes writes again.
	put(t, only0, "k/after", "m0 is back")
}

func TestSingleMember(t *testing.T) {
	c := Start(t)
	if c.Size() != 1 || len(c.Endpoints()) != 1 || c.Leader() != 0 {
		t.Fatalf("single-member cluster: %d members, %d endpoints, leader %d", c.Size(), len(c.Endpoints()), c.Leader())
	}
	put(t, client(t, c.Endpoint(0)), "k", "v")
}

// TestKillLeader: killing the leader abruptly leaves a majority that elects
// a new one and keeps every acknowledged write.
func TestKillLeader(t *testing.T) {
	c := StartCluster(t, 3)
	var lead int
	for lead = c.Leader(); lead < 0; lead = c.Leader() {
		time.Sleep(10 * time.Millisecond)
	}
	all := client(t, c.Endpoints()...)
	before := put(t, all, "k/before", "v")
	c.Kill(lead)
	// A write in flight to the dead leader times out rather than being
	// acknowledged; callers retry, as this does.
	var after int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := all.Put(ctx, "k/after", "v")
		cancel()
		if err == nil {
			after = resp.Header.Revision
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write accepted within 30s of killing the leader: %v", err)
		}
	}
	if after <= before {
		t.Fatalf("write after the kill at %d, not after %d", after, before)
	}
	c.Restart(lead)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := client(t, c.Endpoint(lead)).Get(ctx, "k/", clientv3.WithPrefix())
	if err != nil || resp.Count != 2 {
		t.Fatalf("read from the restarted member: %v, %v; want both writes", resp, err)
	}
}
