package server

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/ipam"
	"github.com/terrane-net/terrane/internal/store"
	"github.com/terrane-net/terrane/internal/store/bolt"
)

// countingStore counts the watches opened on it on Terrane's state (not
// Follow's second one, on the address reports, which wakes policy polls).
type countingStore struct {
	store.Store
	watches atomic.Int64
}

func (c *countingStore) Watch(ctx context.Context, prefix string, from int64) (<-chan store.Event, <-chan error) {
	if prefix == keyAll {
		c.watches.Add(1)
	}
	return c.Store.Watch(ctx, prefix, from)
}

// TestLongPollsShareFollowsWatch: many long polls on a following State are
// woken from Follow's one store watch, by a foreign server's write and by
// the State's own commit, and not by a write outside Terrane's keys (a
// heartbeat). A State that does not follow opens a watch per long poll.
func TestLongPollsShareFollowsWatch(t *testing.T) {
	raw, err := bolt.Open(filepath.Join(t.TempDir(), "terrane.db"), bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cs := &countingStore{Store: raw}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := NewState(context.Background(), cs, log)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewState(context.Background(), raw, log) // another server
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go s.Follow(ctx)
	waitCond(t, "Follow's watch", func() bool { return cs.watches.Load() == 1 })

	const waiters = 50
	wave := func(after int64, wait time.Duration, write func()) []int64 {
		t.Helper()
		out := make([]int64, waiters)
		var wg sync.WaitGroup
		for i := range waiters {
			wg.Add(1)
			go func() { defer wg.Done(); out[i] = s.waitPast(ctx, after, wait) }()
		}
		write()
		wg.Wait()
		return out
	}
	rev0 := s.Stats().Revision
	got := wave(rev0, 10*time.Second, func() { applyTopology(t, other) }) // foreign
	for i, r := range got {
		if r <= rev0 {
			t.Fatalf("waiter %d after a foreign write: %d, want a revision past %d", i, r, rev0)
		}
	}
	rev1 := got[0]
	if err := s.View(ctx, func(*ipam.Allocator, *topologyRecord) error { return nil }); err != nil {
		t.Fatal(err) // take in the foreign write
	}
	got = wave(rev1, 10*time.Second, func() {
		if _, err := s.Do(ctx, func(a *ipam.Allocator) ([]ipam.Change, error) {
			return a.AddHost(ipam.HostSpec{Name: "node-1", Labels: map[string]string{"zone": "a"}})
		}); err != nil {
			t.Error(err)
		}
	})
	for i, r := range got {
		if r <= rev1 {
			t.Fatalf("waiter %d after our own commit: %d, want a revision past %d", i, r, rev1)
		}
	}
	rev2 := s.Stats().Revision
	got = wave(rev2, 300*time.Millisecond, func() {
		if _, err := s.Heartbeat(ctx, "node-1", time.Now()); err != nil {
			t.Error(err)
		}
	})
	for i, r := range got {
		if r != 0 {
			t.Fatalf("waiter %d woke at %d for a heartbeat: want a timeout (0)", i, r)
		}
	}
	if n := cs.watches.Load(); n != 1 {
		t.Errorf("%d store watches for %d long polls: want only Follow's", n, 3*waiters)
	}

	// Without Follow: a watch of its own per long poll, still woken.
	lone, err := NewState(context.Background(), cs, log)
	if err != nil {
		t.Fatal(err)
	}
	before, after := cs.watches.Load(), lone.Stats().Revision
	done := make(chan int64, 1)
	go func() { done <- lone.waitPast(ctx, after, 10*time.Second) }()
	waitCond(t, "the lone State's watch", func() bool { return cs.watches.Load() == before+1 })
	if _, err := other.Do(ctx, func(a *ipam.Allocator) ([]ipam.Change, error) {
		return a.AddHost(ipam.HostSpec{Name: "node-2", Labels: map[string]string{"zone": "b"}})
	}); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r <= after {
		t.Errorf("a State without Follow: %d, want a revision past %d", r, after)
	}
}

func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
