package storetest

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/terrane-net/terrane/internal/store"
)

// nextEvent waits for one event; a closed channel, an error or the timeout
// fails the test.
func nextEvent(t *testing.T, evs <-chan store.Event, errs <-chan error) store.Event {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				var err error
				if errs != nil {
					err = <-errs
				}
				t.Fatalf("watch ended early: %v", err)
			}
			return ev
		case err, ok := <-errs:
			if ok {
				t.Fatalf("watch failed: %v", err)
			}
			errs = nil // closed without an error: the events channel says the rest
		case <-timer.C:
			t.Fatalf("no watch event within %s", timeout)
		}
	}
}

// wantEvents reads len(want) events and compares them in order.
func wantEvents(t *testing.T, evs <-chan store.Event, errs <-chan error, want ...store.Event) {
	t.Helper()
	for i, w := range want {
		got := nextEvent(t, evs, errs)
		if got.Type != w.Type || got.KV.Key != w.KV.Key || got.KV.Revision != w.KV.Revision ||
			!bytes.Equal(got.KV.Value, w.KV.Value) {
			t.Fatalf("event %d = %s %q %q @%d, want %s %q %q @%d", i,
				got.Type, got.KV.Key, short(got.KV.Value), got.KV.Revision,
				w.Type, w.KV.Key, short(w.KV.Value), w.KV.Revision)
		}
	}
}

// wantQuiet checks no event arrives for a little while.
func wantQuiet(t *testing.T, evs <-chan store.Event, errs <-chan error) {
	t.Helper()
	select {
	case ev, ok := <-evs:
		if ok {
			t.Fatalf("unexpected event %s %q @%d", ev.Type, ev.KV.Key, ev.KV.Revision)
		}
		t.Fatalf("watch ended: %v", <-errs)
	case err, ok := <-errs:
		t.Fatalf("watch failed: %v (channel open: %t)", err, ok)
	case <-time.After(200 * time.Millisecond):
	}
}

// wantEnd reads until both channels close and returns the error delivered,
// failing on any event.
func wantEnd(t *testing.T, evs <-chan store.Event, errs <-chan error) error {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	for evs != nil || errs != nil {
		select {
		case ev, ok := <-evs:
			if ok {
				t.Fatalf("event %s %q @%d after the watch should have ended", ev.Type, ev.KV.Key, ev.KV.Revision)
			}
			evs = nil
		case e, ok := <-errs:
			if !ok {
				errs = nil
			} else if e != nil {
				err = e
			}
		case <-timer.C:
			t.Fatalf("watch channels still open %s after the watch should have ended", timeout)
		}
	}
	return err
}

func put(key, value string, rev int64) store.Event {
	return store.Event{Type: store.EventPut, KV: store.KV{Key: key, Value: []byte(value), Revision: rev}}
}

func del(key string, rev int64) store.Event {
	return store.Event{Type: store.EventDelete, KV: store.KV{Key: key, Revision: rev}}
}

func testWatchFromNow(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	r0 := mustTxn(t, s, store.Create("w/old", []byte("old")))
	evs, errs := s.Watch(ctx, "w/", 0)
	r1 := mustTxn(t, s, store.Create("w/a", []byte("1")))
	r2 := mustTxn(t, s, store.Update("w/a", []byte("2"), r1))
	mustTxn(t, s, store.Create("x/other", []byte("x")))
	mustTxn(t, s, store.Create("w", []byte("not under w/")))
	r3 := mustTxn(t, s, store.Delete("w/a", r2))
	r4 := mustTxn(t, s, store.Create("w/b", []byte("b")), store.Create("w/c", []byte("c")), store.Delete("w/old", r0))
	wantEvents(t, evs, errs,
		put("w/a", "1", r1), put("w/a", "2", r2), del("w/a", r3),
		put("w/b", "b", r4), put("w/c", "c", r4), del("w/old", r4))
	wantQuiet(t, evs, errs)
}

func testWatchReplay(t *testing.T, s store.Store) {
	ctx := ctxFor(t)
	r1 := mustTxn(t, s, store.Create("h/1", []byte("v1")))
	r2 := mustTxn(t, s, store.Update("h/1", []byte("v2"), r1))
	mustTxn(t, s, store.Create("other", []byte("o")))
	r3 := mustTxn(t, s, store.Create("h/2", []byte("x")))

	evs, errs := s.Watch(ctx, "h/", r2)
	wantEvents(t, evs, errs, put("h/1", "v2", r2), put("h/2", "x", r3))
	r4 := mustTxn(t, s, store.Delete("h/2", r3))
	wantEvents(t, evs, errs, del("h/2", r4))
	wantQuiet(t, evs, errs)

	evs, errs = s.Watch(ctx, "h/", r1)
	wantEvents(t, evs, errs, put("h/1", "v1", r1), put("h/1", "v2", r2), put("h/2", "x", r3), del("h/2", r4))

	// The list-then-watch pattern misses nothing and repeats nothing.
	kvs, rev, err := s.List(ctx, "h/")
	if err != nil || len(kvs) != 1 {
		t.Fatalf("List(h/) = %d records, %v; want 1", len(kvs), err)
	}
	evs, errs = s.Watch(ctx, "h/", rev+1)
	r5 := mustTxn(t, s, store.Create("h/3", []byte("3")))
	wantEvents(t, evs, errs, put("h/3", "3", r5))
	wantQuiet(t, evs, errs)
}

func testWatchCancel(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(ctxFor(t))
	evs, errs := s.Watch(ctx, "c/", 0)
	r1 := mustTxn(t, s, store.Create("c/1", []byte("1")))
	wantEvents(t, evs, errs, put("c/1", "1", r1))
	cancel()
	if err := wantEnd(t, evs, errs); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled watch ended with %v, want no error", err)
	}
	// Commits go on with the watcher gone.
	for i := range 20 {
		mustTxn(t, s, store.Create("c/more/"+strconv.Itoa(i), nil))
	}

	done, cancelDone := context.WithCancel(ctxFor(t))
	cancelDone()
	evs, errs = s.Watch(done, "c/", 0)
	if err := wantEnd(t, evs, errs); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("watch with a cancelled context ended with %v, want no error", err)
	}
}

func testWatchCompacted(t *testing.T, s store.Store) {
	c, ok := s.(Compactor)
	if !ok {
		t.Skip("backend implements no storetest.Compactor: ErrCompacted not tested")
	}
	ctx := ctxFor(t)
	r1 := mustTxn(t, s, store.Create("p/1", []byte("1")))
	r2 := mustTxn(t, s, store.Update("p/1", []byte("2"), r1))
	r3 := mustTxn(t, s, store.Create("p/2", []byte("x")))
	if err := c.Compact(ctx, r3); err != nil {
		t.Fatalf("Compact(%d): %v", r3, err)
	}
	for _, from := range []int64{r1, r2} {
		evs, errs := s.Watch(ctx, "p/", from)
		if err := wantEnd(t, evs, errs); !errors.Is(err, store.ErrCompacted) {
			t.Fatalf("Watch from %d after compaction to %d ended with %v, want store.ErrCompacted", from, r3, err)
		}
	}
	// The compaction revision itself and everything after stay watchable.
	evs, errs := s.Watch(ctx, "p/", r3)
	wantEvents(t, evs, errs, put("p/2", "x", r3))
	r4 := mustTxn(t, s, store.Delete("p/1", r2))
	wantEvents(t, evs, errs, del("p/1", r4))
	// Records survive compaction.
	wantKV(t, s, "p/2", []byte("x"), r3)
}
