package bolt

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
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
