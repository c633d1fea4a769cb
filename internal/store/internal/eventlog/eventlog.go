// Package eventlog is the in-process watch machinery of stores that commit
// locally (the bolt backend): a bounded history of committed events and a
// fan-out to watchers that replays history and then follows new commits.
//
// Each watcher reads the history at its own pace in its own goroutine, so a
// slow watcher never blocks a commit; one that falls further behind than the
// history reaches is ended with store.ErrCompacted, as etcd does.
package eventlog

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/terrane-net/terrane/internal/store"
)

// ErrClosed ends the watches of a log that was closed.
var ErrClosed = errors.New("store closed")

// Log holds the recent events of a store. The zero value is not usable; call
// New.
type Log struct {
	maxEvents, maxBytes int

	mu      sync.Mutex
	events  []store.Event // ascending by revision; values are never mutated
	bytes   int           // sum of key and value lengths in events
	oldest  int64         // watches from a revision below this get ErrCompacted
	rev     int64         // revision of the last Append (or the start revision)
	changed chan struct{} // closed and replaced on every Append
	done    chan struct{} // closed by Close
	closed  bool
}

// New returns an empty log for a store at revision rev. History starts
// after rev: watching from rev or earlier reports ErrCompacted. The log keeps
// at most maxEvents events and about maxBytes of keys and values, dropping
// whole revisions from the oldest end.
func New(rev int64, maxEvents, maxBytes int) *Log {
	return &Log{
		maxEvents: maxEvents,
		maxBytes:  maxBytes,
		oldest:    rev + 1,
		rev:       rev,
		changed:   make(chan struct{}),
		done:      make(chan struct{}),
	}
}

// Append records the events of one commit at rev. Commits must be appended
// in revision order; the caller serialises them. The log keeps evs (its
// values must not be changed afterwards).
func (l *Log) Append(rev int64, evs []store.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rev <= l.rev {
		panic(fmt.Sprintf("eventlog: append of revision %d after %d", rev, l.rev))
	}
	l.rev = rev
	for _, ev := range evs {
		l.bytes += size(ev)
	}
	l.events = append(l.events, evs...)
	for len(l.events) > 0 && (len(l.events) > l.maxEvents || l.bytes > l.maxBytes) {
		l.dropBefore(l.events[0].KV.Revision + 1)
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// Compact forgets every event older than rev: watches from below rev fail
// with store.ErrCompacted afterwards.
func (l *Log) Compact(rev int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if rev > l.rev {
		return fmt.Errorf("compact to revision %d: the store is only at %d", rev, l.rev)
	}
	l.dropBefore(rev)
	return nil
}

// dropBefore removes the events below rev and moves the history start.
func (l *Log) dropBefore(rev int64) {
	if rev <= l.oldest {
		return
	}
	i := l.search(rev)
	for _, ev := range l.events[:i] {
		l.bytes -= size(ev)
	}
	clear(l.events[:i]) // let the values be collected
	l.events = l.events[i:]
	l.oldest = rev
}

// search returns the index of the first event at or after rev.
func (l *Log) search(rev int64) int {
	return sort.Search(len(l.events), func(i int) bool { return l.events[i].KV.Revision >= rev })
}

// Rev is the revision of the last commit appended.
func (l *Log) Rev() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}

// Close ends every watch with ErrClosed.
func (l *Log) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
}

// Watch implements store.Store.Watch over the log. "From now" (fromRev 0)
// is fixed before Watch returns, so a commit that follows the call is seen.
func (l *Log) Watch(ctx context.Context, prefix string, fromRev int64) (<-chan store.Event, <-chan error) {
	events := make(chan store.Event, 16)
	errs := make(chan error, 1)
	l.mu.Lock()
	next := fromRev
	if next <= 0 {
		next = l.rev + 1
	}
	l.mu.Unlock()
	go func() {
		// events closes first, so a reader that drains it finds the
		// error already waiting.
		defer close(errs)
		defer close(events)
		for {
			batch, changed, err := l.since(prefix, &next)
			if err != nil {
				errs <- err
				return
			}
			for _, ev := range batch {
				ev.KV.Value = clone(ev.KV.Value)
				select {
				case events <- ev:
				case <-ctx.Done():
					return
				case <-l.done:
					errs <- ErrClosed
					return
				}
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			case <-l.done:
				errs <- ErrClosed
				return
			}
		}
	}()
	return events, errs
}

// since returns the events under prefix from *next on, advances *next past
// everything the log holds, and returns the channel that signals the next
// commit.
func (l *Log) since(prefix string, next *int64) ([]store.Event, <-chan struct{}, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, nil, ErrClosed
	}
	if *next < l.oldest {
		return nil, nil, fmt.Errorf("watch %q from revision %d: %w (history starts at %d)",
			prefix, *next, store.ErrCompacted, l.oldest)
	}
	var batch []store.Event
	for _, ev := range l.events[l.search(*next):] {
		if strings.HasPrefix(ev.KV.Key, prefix) {
			batch = append(batch, ev)
		}
	}
	if l.rev >= *next {
		*next = l.rev + 1
	}
	return batch, l.changed, nil
}

func size(ev store.Event) int { return len(ev.KV.Key) + len(ev.KV.Value) }

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
