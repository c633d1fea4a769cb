package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/store/storetest"
)

var _ storetest.Compactor = (*Store)(nil)

func openTemp(t *testing.T, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "terrane.db")
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, path
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openTemp(t, Options{})
		return s
	})
}

func TestReopenKeepsRecordsAndRevision(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t, Options{})
	r1, err := s.Txn(ctx, store.Create("a", []byte("1")), store.Create("b", []byte("2")))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kvs, rev, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if rev != r1 || len(kvs) != 2 || kvs[0].Revision != r1 || string(kvs[1].Value) != "2" {
		t.Fatalf("after reopen: %+v at %d, want a and b at %d", kvs, rev, r1)
	}
	r2, err := s.Txn(ctx, store.Update("a", []byte("x"), r1))
	if err != nil || r2 != r1+1 {
		t.Fatalf("first commit after reopen: rev %d, %v; want %d", r2, err, r1+1)
	}
	// History does not survive a restart: watching from before it must
	// say so instead of silently skipping events.
	evs, errs := s.Watch(ctx, "", r1)
	for range evs {
		t.Fatal("event replayed from before the reopen")
	}
	if err := <-errs; !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("watch from before reopen: %v, want ErrCompacted", err)
	}
}

func TestSecondOpenFailsWhileLocked(t *testing.T) {
	s, path := openTemp(t, Options{})
	defer s.Close()
	start := time.Now()
	_, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "store file "+path+" is in use by another process") {
		t.Fatalf("second Open: %v, want an in-use error naming %s", err, path)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second Open took %s, want about the 100ms lock timeout", d)
	}
	// Once released, the file opens again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}

func TestHistoryIsBounded(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, Options{HistoryEvents: 10, NoSync: true})
	defer s.Close()
	var revs []int64
	for i := range 30 {
		rev, err := s.Txn(ctx, store.Create("k/"+strconv.Itoa(i), nil))
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rev)
	}
	// The last 10 commits replay; the one before them is compacted.
	evs, _ := s.Watch(ctx, "", revs[20])
	for i := 20; i < 30; i++ {
		if ev := <-evs; ev.KV.Revision != revs[i] {
			t.Fatalf("replay %d: revision %d, want %d", i, ev.KV.Revision, revs[i])
		}
	}
	evs, errs := s.Watch(ctx, "", revs[19])
	for range evs {
		t.Fatal("event from a revision beyond the history")
	}
	if err := <-errs; !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("watch beyond history: %v, want ErrCompacted", err)
	}
}

func TestSlowWatcherIsCompactedNotBlocking(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, Options{HistoryEvents: 5, NoSync: true})
	defer s.Close()
	evs, errs := s.Watch(ctx, "", 0) // never read until the end
	for i := range 200 {
		if _, err := s.Txn(ctx, store.Create("k/"+strconv.Itoa(i), nil)); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	for range evs {
		n++
	}
	if err := <-errs; !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("slow watcher ended with %v after %d events, want ErrCompacted", err, n)
	}
}

func TestCloseEndsWatches(t *testing.T) {
	s, _ := openTemp(t, Options{})
	evs, errs := s.Watch(context.Background(), "", 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range evs {
		t.Fatal("event after Close")
	}
	if err := <-errs; err == nil {
		t.Fatal("watch ended silently on Close, want an error")
	}
}

// TestGroupCommit: concurrent transactions share commits (fewer commits
// than transactions) yet each is judged on its own, in one order: of many
// creates of one key exactly one wins, every other transaction commits, the
// revisions are distinct and contiguous, and a watch sees them in order.
func TestGroupCommit(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t, Options{})
	defer s.Close()
	_, base, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	evs, errs := s.Watch(ctx, "", 0)
	const n = 64
	var wg sync.WaitGroup
	revs := make([]int64, 2*n)
	errsOf := make([]error, 2*n)
	for i := range 2 * n {
		wg.Go(func() {
			key := fmt.Sprintf("k%03d", i)
			if i%2 == 1 {
				key = "contended"
			}
			revs[i], errsOf[i] = s.Txn(ctx, store.Create(key, []byte("v")))
		})
	}
	wg.Wait()
	won, seen := 0, map[int64]bool{}
	for i, err := range errsOf {
		switch {
		case err == nil:
			if seen[revs[i]] {
				t.Fatalf("revision %d given twice", revs[i])
			}
			seen[revs[i]] = true
			if i%2 == 1 {
				won++
			}
		case i%2 == 0 || !errors.Is(err, store.ErrConflict):
			t.Fatalf("txn %d: %v", i, err)
		}
	}
	if won != 1 || len(seen) != n+1 {
		t.Fatalf("%d creates of one key won, %d commits; want 1 and %d", won, len(seen), n+1)
	}
	for r := base + 1; r <= base+n+1; r++ {
		if !seen[r] {
			t.Fatalf("revision %d missing: revisions %v are not contiguous", r, seen)
		}
		ev := <-evs
		if ev.KV.Revision != r {
			t.Fatalf("watch: revision %d, want %d", ev.KV.Revision, r)
		}
	}
	if g := s.groups.Load(); g >= 2*n {
		t.Errorf("%d commits for %d concurrent transactions: none shared", g, 2*n)
	}
	t.Logf("%d transactions in %d commits", 2*n, s.groups.Load())
	select {
	case err := <-errs:
		t.Fatalf("watch ended: %v", err)
	default:
	}
}
