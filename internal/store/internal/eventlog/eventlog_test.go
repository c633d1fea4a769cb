package eventlog

import (
	"context"
	"errors"
	"testing"

	"github.com/terrane-net/terrane/internal/store"
)

func put(key string, rev int64, n int) store.Event {
	return store.Event{Type: store.EventPut, KV: store.KV{Key: key, Value: make([]byte, n), Revision: rev}}
}

func TestTrimKeepsWholeRevisions(t *testing.T) {
	l := New(1, 3, 1<<20)
	l.Append(2, []store.Event{put("a", 2, 0), put("b", 2, 0)})
	l.Append(3, []store.Event{put("c", 3, 0), put("d", 3, 0)})
	// Four events exceed the bound of three: all of revision 2 goes, not
	// half of it.
	if l.oldest != 3 || len(l.events) != 2 {
		t.Fatalf("after trim: oldest %d, %d events; want 3 and 2", l.oldest, len(l.events))
	}
	evs, errs := l.Watch(context.Background(), "", 2)
	for range evs {
		t.Fatal("replayed part of a trimmed revision")
	}
	if err := <-errs; !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("watch from a trimmed revision: %v", err)
	}
}

func TestByteBound(t *testing.T) {
	l := New(0, 100, 1000)
	for rev := int64(1); rev <= 10; rev++ {
		l.Append(rev, []store.Event{put("k", rev, 300)})
	}
	if l.bytes > 1000 || l.oldest != 8 {
		t.Fatalf("history holds %d bytes from revision %d; want <= 1000 from 8", l.bytes, l.oldest)
	}
}

func TestCompactFutureRevision(t *testing.T) {
	l := New(5, 10, 1000)
	if err := l.Compact(6); err == nil {
		t.Fatal("compaction beyond the current revision succeeded")
	}
	if err := l.Compact(5); err != nil {
		t.Fatal(err)
	}
}

func TestAppendOutOfOrderPanics(t *testing.T) {
	l := New(5, 10, 1000)
	defer func() {
		if recover() == nil {
			t.Fatal("append of an old revision did not panic")
		}
	}()
	l.Append(5, nil)
}
