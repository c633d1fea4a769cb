package etcd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/store/etcd/etcdtest"
	"github.com/terrane-net/terrane/internal/store/storetest"
)

var _ storetest.Compactor = (*Store)(nil)

func newStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs the suite against one real etcd server; each subtest
// gets its own key prefix, so each sees an empty store.
func TestConformance(t *testing.T) {
	start := time.Now()
	c := etcdtest.Start(t)
	t.Logf("etcd ready in %s", time.Since(start).Round(time.Millisecond))
	n := 0
	storetest.Run(t, func(t *testing.T) store.Store {
		n++
		return newStore(t, Config{Endpoints: c.Endpoints(), Prefix: fmt.Sprintf("/terrane-test/%d/", n)})
	})
}

func TestKeysLiveUnderThePrefix(t *testing.T) {
	c := etcdtest.Start(t)
	ctx := context.Background()
	def := newStore(t, Config{Endpoints: c.Endpoints()})
	defer def.Close()
	other := newStore(t, Config{Endpoints: c.Endpoints(), Prefix: "/other/"})
	defer other.Close()

	rev, err := def.Txn(ctx, store.Create("v1/hosts/h1", []byte("h1")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Txn(ctx, store.Create("v1/hosts/h2", []byte("h2"))); err != nil {
		t.Fatal(err)
	}
	raw, err := def.cli.Get(ctx, "/terrane/v1/hosts/h1")
	if err != nil || len(raw.Kvs) != 1 || raw.Kvs[0].ModRevision != rev {
		t.Fatalf("raw read of /terrane/v1/hosts/h1: %v, %v", raw, err)
	}
	kvs, _, err := def.List(ctx, "")
	if err != nil || len(kvs) != 1 || kvs[0].Key != "v1/hosts/h1" {
		t.Fatalf("List under the default prefix = %+v, %v; want only v1/hosts/h1", kvs, err)
	}
}

func TestListPages(t *testing.T) {
	c := etcdtest.Start(t)
	ctx := context.Background()
	s := newStore(t, Config{Endpoints: c.Endpoints()})
	defer s.Close()
	const n = 2*listPage + 7
	var ops []store.Op
	for i := range n {
		ops = append(ops, store.Create(fmt.Sprintf("p/%05d", i), nil))
		if len(ops) == store.MaxTxnOps || i == n-1 {
			if _, err := s.Txn(ctx, ops...); err != nil {
				t.Fatal(err)
			}
			ops = nil
		}
	}
	kvs, rev, err := s.List(ctx, "p/")
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != n {
		t.Fatalf("List over %d pages returned %d records, want %d", n/listPage+1, len(kvs), n)
	}
	for i, kv := range kvs {
		if want := fmt.Sprintf("p/%05d", i); kv.Key != want || kv.Revision > rev {
			t.Fatalf("record %d = %q @%d (listing @%d), want %q", i, kv.Key, kv.Revision, rev, want)
		}
	}
}

func TestNewFailsWithoutServer(t *testing.T) {
	start := time.Now()
	_, err := New(context.Background(), Config{Endpoints: []string{"http://127.0.0.1:1"}, DialTimeout: 500 * time.Millisecond})
	if err == nil {
		t.Fatal("New succeeded with no server listening")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("New took %s to fail, want about the 500ms dial timeout", d)
	}
}

func TestWatchEndsWithErrorOnClose(t *testing.T) {
	c := etcdtest.Start(t)
	s := newStore(t, Config{Endpoints: c.Endpoints()})
	evs, errs := s.Watch(context.Background(), "", 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if err == nil {
			t.Fatal("watch ended without an error when its store closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch still open 10s after its store closed")
	}
	for range evs {
	}
}

// TestWatchFollowsAcrossMemberRestart: a watch whose only endpoint dies
// delivers, after the member is back, every event committed meanwhile — in
// order, none lost, none repeated.
func TestWatchFollowsAcrossMemberRestart(t *testing.T) {
	start := time.Now()
	c := etcdtest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	watcher := newStore(t, Config{Endpoints: []string{c.Endpoint(0)}})
	defer watcher.Close()
	writer := newStore(t, Config{Endpoints: []string{c.Endpoint(1), c.Endpoint(2)}})
	defer writer.Close()

	evs, errs := watcher.Watch(ctx, "k/", 0)
	var revs []int64
	write := func(i int) {
		revs = append(revs, createRetrying(ctx, t, writer, fmt.Sprintf("k/%d", i)))
	}
	write(0)
	c.Kill(0)
	for i := 1; i <= 10; i++ {
		write(i)
	}
	c.Restart(0)
	write(11)
	for i, want := range revs {
		select {
		case ev, ok := <-evs:
			if !ok {
				t.Fatalf("watch ended after %d events: %v", i, <-errs)
			}
			if ev.KV.Key != fmt.Sprintf("k/%d", i) || ev.KV.Revision != want {
				t.Fatalf("event %d = %q @%d, want k/%d @%d", i, ev.KV.Key, ev.KV.Revision, i, want)
			}
		case err := <-errs:
			t.Fatalf("watch failed after %d events: %v", i, err)
		case <-ctx.Done():
			t.Fatalf("only %d of %d events within the deadline", i, len(revs))
		}
	}
	t.Logf("stop, 10 writes, restart and catch-up in %s", time.Since(start).Round(time.Millisecond))
}

// createRetrying creates key, retrying while the cluster elects a new leader.
// An attempt that timed out may still have committed: a conflict on retry
// means it did, and the key's revision is the answer.
func createRetrying(ctx context.Context, t *testing.T, s *Store, key string) int64 {
	t.Helper()
	for {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		rev, err := s.Txn(actx, store.Create(key, []byte("v")))
		cancel()
		if err == nil {
			return rev
		}
		if errors.Is(err, store.ErrConflict) {
			kv, gerr := s.Get(ctx, key)
			if gerr != nil {
				t.Fatal(gerr)
			}
			return kv.Revision
		}
		if ctx.Err() != nil {
			t.Fatalf("create %s: %v", key, err)
		}
	}
}

func TestCompactionErrorsMapToErrCompacted(t *testing.T) {
	c := etcdtest.Start(t)
	ctx := context.Background()
	s := newStore(t, Config{Endpoints: c.Endpoints()})
	defer s.Close()
	r1, _ := s.Txn(ctx, store.Create("a", nil))
	r2, _ := s.Txn(ctx, store.Create("b", nil))
	if err := s.Compact(ctx, r2); err != nil {
		t.Fatal(err)
	}
	_, err := s.cli.Get(ctx, "/terrane/a", clientv3.WithRev(r1))
	if err := mapErr(err); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("read at a compacted revision: %v, want ErrCompacted", err)
	}
	if err := s.Compact(ctx, r1); !errors.Is(err, store.ErrCompacted) || !strings.Contains(err.Error(), "compact") {
		t.Fatalf("compacting an already compacted revision: %v, want ErrCompacted", err)
	}
}

// TestWatchResumesAfterQuorumLoss: a watch on a member that loses its
// leader is cancelled by etcd ("no leader"); the store re-opens it from the
// next revision and, once quorum is back, delivers what was missed.
func TestWatchResumesAfterQuorumLoss(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	watcher := newStore(t, Config{Endpoints: []string{c.Endpoint(0)}})
	defer watcher.Close()
	writer := newStore(t, Config{Endpoints: []string{c.Endpoint(1), c.Endpoint(2)}})
	defer writer.Close()

	evs, errs := watcher.Watch(ctx, "q/", 0)
	revs := []int64{createRetrying(ctx, t, writer, "q/0")}
	c.Kill(1)
	c.Kill(2)
	// Wait until member 0 notices it has no leader and cancels the watch.
	for watcher.reopens.Load() == 0 {
		if ctx.Err() != nil {
			t.Fatal("etcd never cancelled the watch of a member without a leader")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Restart(1)
	c.Restart(2)
	for i := 1; i <= 5; i++ {
		revs = append(revs, createRetrying(ctx, t, writer, fmt.Sprintf("q/%d", i)))
	}
	for i, want := range revs {
		select {
		case ev, ok := <-evs:
			if !ok {
				t.Fatalf("watch ended after %d events: %v", i, <-errs)
			}
			if ev.KV.Key != fmt.Sprintf("q/%d", i) || ev.KV.Revision != want {
				t.Fatalf("event %d = %q @%d, want q/%d @%d", i, ev.KV.Key, ev.KV.Revision, i, want)
			}
		case err := <-errs:
			t.Fatalf("watch failed after %d events: %v", i, err)
		case <-ctx.Done():
			t.Fatalf("only %d of %d events within the deadline", i, len(revs))
		}
	}
}
