package server

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLeaseOneActive: two servers share a store; exactly one works at a
// time; when the holder stops cleanly the other takes over at its next
// tick, and when the holder stops renewing (killed) the other takes over
// after the TTL.
func TestLeaseOneActive(t *testing.T) {
	st := openBolt(t, t.TempDir())
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	state, err := NewState(context.Background(), st, log)
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 300 * time.Millisecond
	var working atomic.Int32
	var overlap atomic.Bool
	var mu sync.Mutex
	active := map[string]bool{}
	run := func(ctx context.Context, name string) *sync.WaitGroup {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			NewLease(state, "job", name, ttl, log).Run(ctx, func(a bool, _ string) {
				mu.Lock()
				active[name] = a
				mu.Unlock()
			}, func(ctx context.Context) {
				if working.Add(1) > 1 {
					overlap.Store(true)
				}
				<-ctx.Done()
				working.Add(-1)
			})
		}()
		return &wg
	}
	ctxA, stopA := context.WithCancel(context.Background())
	wgA := run(ctxA, "a")
	waitFor(t, func() bool { return working.Load() == 1 })
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	wgB := run(ctxB, "b")
	time.Sleep(2 * ttl)
	mu.Lock()
	if !active["a"] || active["b"] {
		t.Errorf("active = %v, want only a", active)
	}
	mu.Unlock()
	// a shuts down: it deletes the record, b takes over.
	stopA()
	wgA.Wait()
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return active["b"] })
	if overlap.Load() {
		t.Error("two holders worked at once")
	}
	// A holder killed without releasing leaves its record: a new server
	// takes over only after the record stayed unchanged for the TTL.
	ctxC, stopC := context.WithCancel(context.Background())
	defer stopC()
	stopB()
	wgB.Wait() // b released on a clean stop; write a stale record as a killed b would leave
	if _, _, err := NewLease(state, "job", "ghost", ttl, log).write(context.Background(), time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	wgC := run(ctxC, "c")
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return active["c"] })
	if d := time.Since(start); d < ttl {
		t.Errorf("took over an unexpired lease after %v (TTL %v)", d, ttl)
	}
	stopC()
	wgC.Wait()
	if overlap.Load() {
		t.Error("two holders worked at once")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met in 10 s")
}
